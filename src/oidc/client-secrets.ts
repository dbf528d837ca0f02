import { hash, randomBytes } from 'node:crypto';
import type Provider from 'oidc-provider';
import { constantTimeEqual, type SecretBox } from '../infra/crypto.ts';
import { CLIENT_SECRET_PURPOSE } from '../domain/clients/clients.ts';
import type { ClientRow } from '../repos/clients.ts';

/**
 * Clients hold a keyed digest of their secret (see oidc/adapter.ts), so the provider compares
 * the digest of what was presented, in constant time.
 *
 * A client authenticates on every token request with the same secret, so each Client instance
 * remembers a salted SHA-256 fingerprint of the secret that last matched (one-shot SHA-256 costs
 * a tenth of the keyed digest). An instance is built from one stored record (client-instances.ts):
 * a rotated secret, changed anywhere, is a new record and so a new instance that remembers
 * nothing, and the old secret is checked against the new digest and refused.
 *
 * A rotation with an overlap (service accounts) keeps the previous secret's digest in the record
 * until an expiry: a secret that is not the current one is checked against it, read from the
 * client's record (`records`, the shared cache every instance drops on a change), on every use and
 * never remembered, so it stops working the moment its overlap ends.
 */
export function useDigestedClientSecrets(
  provider: Provider,
  box: SecretBox,
  records?: { find(clientId: string): Promise<Pick<ClientRow, 'previous_secret_digest' | 'previous_secret_expires_at'> | undefined> },
): void {
  const salt = randomBytes(16).toString('base64url');
  const fingerprint = (secret: string) => hash('sha256', salt + secret, 'base64url');
  const lastMatched = new WeakMap<object, string>();
  Object.defineProperty(provider.Client.prototype, 'compareClientSecret', {
    configurable: true,
    value: async function compareClientSecret(this: { clientSecret?: string; clientId: string }, presented: string) {
      if (!this.clientSecret || typeof presented !== 'string') return false;
      const presentedPrint = fingerprint(presented);
      const known = lastMatched.get(this);
      if (known !== undefined && constantTimeEqual(known, presentedPrint)) return true;
      const digest = box.digest(presented, CLIENT_SECRET_PURPOSE);
      const matches = constantTimeEqual(this.clientSecret, digest);
      if (matches) {
        lastMatched.set(this, presentedPrint);
        return true;
      }
      const record = await records?.find(this.clientId);
      const previous = record?.previous_secret_digest;
      const until = record?.previous_secret_expires_at;
      if (!previous || !until || new Date(until).getTime() <= Date.now()) return false;
      return constantTimeEqual(previous, digest);
    },
  });
}
