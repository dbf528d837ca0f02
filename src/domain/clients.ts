import { randomBytes } from 'node:crypto';
import type { SecretBox } from '../infra/crypto.ts';
import type { EphemeralStore } from '../infra/ephemeral/index.ts';
import { createSharedCache } from '../infra/shared-cache.ts';
import type { ClientRow, ClientsRepo } from '../repos/clients.ts';

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

/** How long an instance may serve a client record it read, should an invalidation be lost. */
const CACHE_TTL_MS = 10_000;

export function createClientRegistry(deps: { repo: ClientsRepo; box: SecretBox; ephemeral: EphemeralStore }) {
  const { repo, box } = deps;
  // Every token request reads its client; changes are broadcast to every instance's copy.
  const cache = createSharedCache<ClientRow>({
    name: 'clients',
    ttlMs: CACHE_TTL_MS,
    ephemeral: deps.ephemeral,
    load: (clientId) => repo.find(clientId),
  });

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
    /** The stored client, through the shared cache (what the provider reads on every request). */
    find(clientId: string): Promise<ClientRow | undefined> {
      return cache.get(clientId);
    },

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
      await cache.invalidate(clientId);
      return { ...metadata, client_id: clientId, ...(secret ? { client_secret: secret } : {}) };
    },
  };
}

export type ClientRegistry = ReturnType<typeof createClientRegistry>;
