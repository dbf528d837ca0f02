import type Provider from 'oidc-provider';
import { constantTimeEqual, type SecretBox } from '../infra/crypto.ts';
import { CLIENT_SECRET_PURPOSE } from '../domain/clients/clients.ts';

/**
 * Clients hold a keyed digest of their secret (see oidc/adapter.ts), so the provider compares
 * the digest of what was presented, in constant time.
 */
export function useDigestedClientSecrets(provider: Provider, box: SecretBox): void {
  Object.defineProperty(provider.Client.prototype, 'compareClientSecret', {
    configurable: true,
    value: async function compareClientSecret(this: { clientSecret?: string }, presented: string) {
      if (!this.clientSecret || typeof presented !== 'string') return false;
      return constantTimeEqual(this.clientSecret, box.digest(presented, CLIENT_SECRET_PURPOSE));
    },
  });
}
