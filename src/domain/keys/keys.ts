import { createHash, generateKeyPairSync, randomBytes, type JsonWebKey } from 'node:crypto';
import type { SecretBox } from '../../infra/crypto.ts';
import type { ServerKeyRow, ServerKeysRepo } from '../../repos/server-keys.ts';
import { StartupError } from '../errors.ts';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { EventRecorder } from '../events/events.ts';

export const SIGNING_ALGS = ['RS256', 'ES256'] as const;
type SigningAlg = (typeof SIGNING_ALGS)[number];

export interface KeySet {
  /** Private JWKs for oidc-provider; per alg the active key comes first, pending ones last. */
  jwks: { keys: JsonWebKey[] };
  /** The same keys' public parts, as published at jwks_uri. */
  publicJwks: { keys: JsonWebKey[] };
  /** Keygrip list: the first signs, every one verifies. */
  cookieKeys: string[];
  /** Changes whenever the set or the order changes; instances rebuild the provider on change. */
  fingerprint: string;
}

export interface KeyTimings {
  /** How long a new key is published before it signs, so every cache of the JWKS sees it first. */
  propagationSeconds: number;
  /** The longest lifetime of anything a retired key signed (ID and JWT access tokens). */
  maxSignedTtlSeconds: number;
  /** The longest a cookie signed by a retired cookie key must still verify (session lifetime). */
  cookieTtlSeconds: number;
}

function newSigningKey(alg: SigningAlg, kid: string): JsonWebKey {
  const pair =
    alg === 'RS256'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function publicPart(jwk: JsonWebKey): JsonWebKey {
  const { kty, crv, x, y, n, e, kid, alg, use } = jwk as Record<string, string>;
  return Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, kid, alg, use }).filter(([, v]) => v !== undefined));
}

function newKid(): string {
  return randomBytes(12).toString('base64url');
}

export function createKeyService(deps: { repo: ServerKeysRepo; box: SecretBox; timings: KeyTimings; events: EventRecorder }) {
  const { repo, box, timings, events } = deps;

  function sealedRows(activatesAt: Date): Array<Omit<ServerKeyRow, 'created_at' | 'retires_at'>> {
    const rows: Array<Omit<ServerKeyRow, 'created_at' | 'retires_at'>> = SIGNING_ALGS.map((alg) => {
      const kid = newKid();
      const jwk = newSigningKey(alg, kid);
      return {
        kid,
        use: 'sig' as const,
        alg,
        public_jwk: publicPart(jwk) as Record<string, unknown>,
        private_sealed: box.encrypt(JSON.stringify(jwk), `server_keys:${kid}`),
        activates_at: activatesAt,
      };
    });
    const cookieKid = newKid();
    rows.push({
      kid: cookieKid,
      use: 'cookie',
      alg: 'HS256',
      public_jwk: null,
      private_sealed: box.encrypt(randomBytes(32).toString('base64url'), `server_keys:${cookieKid}`),
      activates_at: activatesAt,
    });
    return rows;
  }

  return {
    /**
     * First boot: create the signing and cookie keys, active at once. Under a lock, so instances
     * booting together on one empty database make one key set, not one each.
     */
    async ensureKeys(): Promise<boolean> {
      return repo.underGenerationLock(async (trx) => {
        const live = await repo.listLive(trx);
        if (live.some((k) => k.use === 'sig') && live.some((k) => k.use === 'cookie')) return false;
        await repo.insert(sealedRows(new Date()), trx);
        return true;
      });
    },

    /**
     * Stops the boot with a plain message when KEY_ENCRYPTION_KEY cannot open the stored keys
     * (they were sealed with another one), instead of a decipher error deep in the first load.
     */
    async checkKeyEncryptionKey(): Promise<void> {
      for (const k of await repo.listLive()) {
        try {
          box.decrypt(k.private_sealed, `server_keys:${k.kid}`);
        } catch {
          throw new StartupError(
            'KEY_ENCRYPTION_KEY does not open the stored signing keys: they were sealed with another key. ' +
              'Start with the KEY_ENCRYPTION_KEY that sealed them (without one, the key-encryption-key file in DATA_DIR).',
          );
        }
      }
    },

    /**
     * Publishes new keys now; they sign after the propagation delay. The keys they replace stay
     * published until everything they signed has expired. Records key.rotated with the new keys'
     * ids (never their material) in the same transaction; a local CLI rotation's actor is the system.
     */
    async rotate(now = new Date(), context: ChangeContext = {}): Promise<{ activatesAt: Date; sigRetiresAt: Date; cookieRetiresAt: Date }> {
      const activatesAt = new Date(now.getTime() + timings.propagationSeconds * 1000);
      const sigRetiresAt = new Date(activatesAt.getTime() + timings.maxSignedTtlSeconds * 1000);
      const cookieRetiresAt = new Date(activatesAt.getTime() + timings.cookieTtlSeconds * 1000);
      const rows = sealedRows(activatesAt);
      // created_at orders keys; make the new ones strictly newer than any existing row.
      // Under the key generation lock: a first boot's ensureKeys never interleaves with a rotation.
      await repo.underGenerationLock(async (trx) => {
        await repo.retireOlder('sig', new Date(now.getTime() + 1), sigRetiresAt, trx);
        await repo.retireOlder('cookie', new Date(now.getTime() + 1), cookieRetiresAt, trx);
        await repo.insert(rows.map((r) => ({ ...r, created_at: new Date(now.getTime() + 2) })), trx);
        await events.record({
          type: 'key.rotated', target: { type: 'key', id: rows[0]!.kid }, ...byOperator(context),
          payload: {
            keys: rows.map((r) => ({ kid: r.kid, use: r.use, alg: r.alg })),
            activatesAt: activatesAt.toISOString(),
            retiresAt: { sig: sigRetiresAt.toISOString(), cookie: cookieRetiresAt.toISOString() },
          },
        }, trx);
      });
      return { activatesAt, sigRetiresAt, cookieRetiresAt };
    },

    async load(now = new Date()): Promise<KeySet> {
      const live = await repo.listLive();
      const rank = (k: ServerKeyRow) => (k.activates_at.getTime() <= now.getTime() ? 0 : 1);
      // Active keys (newest activation first), then pending ones.
      const ordered = [...live].sort(
        (a, b) => rank(a) - rank(b) || b.activates_at.getTime() - a.activates_at.getTime() || a.kid.localeCompare(b.kid),
      );
      const open = (k: ServerKeyRow) => box.decrypt(k.private_sealed, `server_keys:${k.kid}`);
      const sig = ordered.filter((k) => k.use === 'sig');
      const jwks = { keys: sig.map((k) => JSON.parse(open(k)) as JsonWebKey) };
      const publicJwks = { keys: sig.map((k) => k.public_jwk as JsonWebKey) };
      const cookieKeys = ordered.filter((k) => k.use === 'cookie').map(open);
      if (jwks.keys.length === 0 || cookieKeys.length === 0) throw new Error('no signing or cookie keys: run migrations and boot once');
      const fingerprint = createHash('sha256')
        .update(ordered.map((k) => `${k.kid}:${rank(k)}`).join(','))
        .digest('base64url');
      return { jwks, publicJwks, cookieKeys, fingerprint };
    },

    async purgeRetired(): Promise<number> {
      return repo.deleteRetired();
    },
  };
}

export type KeyService = ReturnType<typeof createKeyService>;
