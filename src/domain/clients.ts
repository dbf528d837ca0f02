import { randomBytes } from 'node:crypto';
import type { SecretBox } from '../infra/crypto.ts';
import type { ClientsRepo } from '../repos/clients.ts';

export const CLIENT_SECRET_PURPOSE = 'client-secret';

export interface ClientInput {
  metadata: Record<string, unknown> & { client_id?: string; client_secret?: string };
  firstParty?: boolean;
}

/** Generated secrets carry 256 bits of entropy, so a keyed digest is as strong as a slow hash. */
export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function needsSecret(metadata: Record<string, unknown>): boolean {
  const method = (metadata.token_endpoint_auth_method as string | undefined) ?? 'client_secret_basic';
  return method === 'client_secret_basic' || method === 'client_secret_post' || method === 'client_secret_jwt';
}

export function createClientRegistry(deps: { repo: ClientsRepo; box: SecretBox }) {
  const { repo, box } = deps;

  function sealSecret(clientId: string, metadata: Record<string, unknown>, secret: string | undefined) {
    if (!secret) return { secret_digest: null, secret_sealed: null };
    return {
      secret_digest: box.digest(secret, CLIENT_SECRET_PURPOSE),
      // Only client_secret_jwt needs the raw secret back (it keys an HMAC); keep it encrypted.
      secret_sealed:
        metadata.token_endpoint_auth_method === 'client_secret_jwt' ? box.encrypt(secret, `clients:${clientId}`) : null,
    };
  }

  return {
    /** Stores a client; returns its metadata with the secret, which is shown only this once. */
    async register(input: ClientInput, opts: { upsert?: boolean } = {}) {
      const { client_secret: chosenSecret, client_id: chosenId, ...metadata } = input.metadata;
      const clientId = chosenId ?? randomBytes(16).toString('base64url');
      const secret = needsSecret(metadata) ? (chosenSecret ?? generateClientSecret()) : undefined;
      const row = {
        client_id: clientId,
        metadata,
        first_party: input.firstParty ?? false,
        ...sealSecret(clientId, metadata, secret),
      };
      if (opts.upsert) await repo.upsert(row);
      else await repo.insert(row);
      return { ...metadata, client_id: clientId, ...(secret ? { client_secret: secret } : {}) };
    },
  };
}

export type ClientRegistry = ReturnType<typeof createClientRegistry>;
