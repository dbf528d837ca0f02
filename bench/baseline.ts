/**
 * The baseline: a bare oidc-provider with its default in-memory adapter, one static client and one
 * resource server, nothing of ours. The benchmark runs the client_credentials and introspection
 * scenarios against it so each of our figures can be read as a ratio. PORT, BASELINE_CLIENT_ID and
 * BASELINE_CLIENT_SECRET from the environment.
 *
 * Refresh: with BASELINE_REFRESH_TOKENS=N and BASELINE_REFRESH_FILE, it mints N refresh tokens of
 * one grant (scope openid offline_access, as the benchmark's sign-ins ask) for a second client, the
 * relying party, and writes them to the file, one per line, before it listens. The provider's own
 * in-memory adapter keeps only the last 1,000 entries (an LRU), fewer than a refresh run presents,
 * so this run keeps them in plain Maps instead (MapAdapter) and is started on its own. The relying party
 * is configured as our clients are: the refresh token rotates on every use, and the ID token of
 * the answer is signed RS256 (the default of OpenID Connect), so both servers do the same work.
 *
 * Sign-ins: with BASELINE_SIGNINS=1 the relying party signs in through the provider's own
 * development login page (any login, no password hash) and its grant is loaded without a consent
 * page, as our first-party clients skip it. The benchmark runs it on its own to measure what a
 * complete sign-in costs the provider itself with nothing stored: the floor of ours apart from the
 * password hash.
 *
 * Persisted: with BASELINE_DATABASE_URL the provider keeps its models in that PostgreSQL database
 * through the plainest adapter (bench/baseline-pg-adapter.ts) instead of memory, in any of the
 * modes above. The benchmark runs the opaque token, introspection, refresh and sign-in scenarios
 * against it on PostgreSQL runs, to show what persisting costs the bare provider itself on the
 * same machine.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { createPgAdapter } from './baseline-pg-adapter.ts';
import Provider, { errors, type Adapter, type AdapterPayload, type KoaContextWithOIDC } from 'oidc-provider';

const CLIENT_ID = process.env.BASELINE_CLIENT_ID ?? 'baseline-client';
const CLIENT_SECRET = process.env.BASELINE_CLIENT_SECRET ?? 'baseline-secret-0123456789abcdef0123456789';
const RESOURCE = 'https://api.bench.test';

const port = Number(process.env.PORT ?? 3100);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'baseline-es256', alg: 'ES256', use: 'sig' };
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const rsaJwk = { ...rsa.export({ format: 'jwk' }), kid: 'baseline-rs256', alg: 'RS256', use: 'sig' };
const RP_ID = `${CLIENT_ID}-rp`;

/** Every entry kept until it is removed: the refresh baseline's store (expiry is not needed in a 10 s run). */
class MapAdapter implements Adapter {
  static readonly rows = new Map<string, AdapterPayload>();
  static readonly grants = new Map<string, Set<string>>();
  readonly model: string;
  constructor(model: string) {
    this.model = model;
  }
  #key(id: string) {
    return `${this.model}:${id}`;
  }
  async upsert(id: string, payload: AdapterPayload) {
    MapAdapter.rows.set(this.#key(id), payload);
    if (payload.grantId) {
      const members = MapAdapter.grants.get(payload.grantId) ?? new Set();
      members.add(this.#key(id));
      MapAdapter.grants.set(payload.grantId, members);
    }
  }
  async find(id: string) {
    return MapAdapter.rows.get(this.#key(id));
  }
  async findByUid() {
    return undefined;
  }
  async findByUserCode() {
    return undefined;
  }
  async consume(id: string) {
    const row = MapAdapter.rows.get(this.#key(id));
    if (row) row.consumed = Math.floor(Date.now() / 1000);
  }
  async destroy(id: string) {
    MapAdapter.rows.delete(this.#key(id));
  }
  async revokeByGrantId(grantId: string) {
    for (const key of MapAdapter.grants.get(grantId) ?? []) MapAdapter.rows.delete(key);
    MapAdapter.grants.delete(grantId);
  }
}

const refreshCount = Number(process.env.BASELINE_REFRESH_TOKENS ?? 0);
const signIns = process.env.BASELINE_SIGNINS === '1';
const databaseUrl = process.env.BASELINE_DATABASE_URL;

const provider = new Provider(issuer, {
  ...(databaseUrl ? { adapter: await createPgAdapter(databaseUrl) } : refreshCount > 0 ? { adapter: MapAdapter } : {}),
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'ES256',
    },
    {
      client_id: RP_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['https://rp.bench.test/cb'],
    },
  ],
  jwks: { keys: [jwk as never, rsaJwk as never] },
  rotateRefreshToken: true,
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  ...(signIns
    ? {
        // The grant the consent page would have given: the scope asked for.
        async loadExistingGrant(ctx: KoaContextWithOIDC) {
          const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client!.clientId, accountId: ctx.oidc.session!.accountId! });
          grant.addOIDCScope(ctx.oidc.params!.scope as string);
          await grant.save();
          return grant;
        },
      }
    : {}),
  features: {
    devInteractions: { enabled: signIns },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => {
        if (!resourceIndicator.startsWith('https://')) throw new errors.InvalidTarget();
        return resourceIndicator === RESOURCE
          ? { scope: 'read write', audience: resourceIndicator, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }
          : { scope: 'read write', audience: resourceIndicator, accessTokenFormat: 'opaque' };
      },
    },
  },
});

/** Refresh tokens of one grant, as a relying party holds after signing in with offline_access. */
async function mintRefreshTokens(count: number): Promise<string[]> {
  const client = await provider.Client.find(RP_ID);
  if (!client) throw new Error(`${RP_ID} is not registered`);
  const grant = new provider.Grant({ accountId: 'bench-user', clientId: RP_ID });
  grant.addOIDCScope('openid offline_access');
  const grantId = await grant.save();
  const mint = () =>
    new provider.RefreshToken({ accountId: 'bench-user', client, grantId, scope: 'openid offline_access', gty: 'authorization_code', authTime: Math.floor(Date.now() / 1000) }).save();
  const tokens: string[] = [];
  // 32 at a time: persisted (BASELINE_DATABASE_URL), one at a time would take minutes.
  while (tokens.length < count) tokens.push(...(await Promise.all(Array.from({ length: Math.min(32, count - tokens.length) }, mint))));
  return tokens;
}

if (refreshCount > 0 && process.env.BASELINE_REFRESH_FILE) {
  writeFileSync(process.env.BASELINE_REFRESH_FILE, `${(await mintRefreshTokens(refreshCount)).join('\n')}\n`);
}

const server = http.createServer(provider.callback());
// The same connection settings as our server (src/services.ts, src/infra/db.ts).
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 30_000;
server.listen(port, '127.0.0.1', () => process.stdout.write(`baseline listening on ${issuer}\n`));
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setTimeout(() => process.exit(0), 2000).unref();
});
