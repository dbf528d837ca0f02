import type { OidcPayloadsRepo, StoredPayload } from '../repos/oidc-payloads.ts';

interface Pending {
  key: [string, string];
  resolve(value: StoredPayload | undefined): void;
  reject(err: unknown): void;
}

const MAX_BATCH = 200;

// What the provider reads right after finding one of these: the grant (redemption, refresh,
// introspection, userinfo), for a code or a refresh token the account, for an interaction the
// account it is for (the resumed authorization loads it), and for a code the session it was
// issued in (its tokens end with that session). They come with the row.
const WITH_GRANT = ['AccessToken', 'RefreshToken', 'AuthorizationCode'];
const WITH_ACCOUNT = ['RefreshToken', 'AuthorizationCode', 'Interaction'];
const WITH_SESSION = ['AuthorizationCode'];

/**
 * Coalesces the adapter's find() calls made in the same turn of the event loop into one query.
 * The provider looks an opaque token up under several models at once (introspection tries
 * AccessToken, ClientCredentials and RefreshToken), and concurrent requests look up tokens side by
 * side; one round trip serves them all. Nothing is cached: each call still reads the database.
 * A token's grant and account come with it (see WITH_GRANT), for the same request only.
 */
export function createLookupBatcher(repo: OidcPayloadsRepo) {
  let pending: Pending[] = [];
  let scheduled = false;

  async function flush(batch: Pending[]) {
    try {
      const found = await repo.findMany(batch.map((p) => p.key), WITH_GRANT, WITH_ACCOUNT, WITH_SESSION);
      for (const p of batch) p.resolve(found.get(`${p.key[0]}\0${p.key[1]}`));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  function drain() {
    scheduled = false;
    const all = pending;
    pending = [];
    for (let i = 0; i < all.length; i += MAX_BATCH) void flush(all.slice(i, i + MAX_BATCH));
  }

  return {
    find(model: string, id: string): Promise<StoredPayload | undefined> {
      return new Promise((resolve, reject) => {
        pending.push({ key: [model, id], resolve, reject });
        if (!scheduled) {
          scheduled = true;
          setImmediate(drain);
        }
      });
    },
  };
}

export type LookupBatcher = ReturnType<typeof createLookupBatcher>;
