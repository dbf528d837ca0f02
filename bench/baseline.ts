/**
 * The baseline: a bare oidc-provider with its default in-memory adapter, one static client and one
 * resource server, nothing of ours. The benchmark runs the client_credentials and introspection
 * scenarios against it so each of our figures can be read as a ratio. PORT, BASELINE_CLIENT_ID and
 * BASELINE_CLIENT_SECRET from the environment.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const CLIENT_ID = process.env.BASELINE_CLIENT_ID ?? 'baseline-client';
const CLIENT_SECRET = process.env.BASELINE_CLIENT_SECRET ?? 'baseline-secret-0123456789abcdef0123456789';
const RESOURCE = 'https://api.bench.test';

const port = Number(process.env.PORT ?? 3100);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'baseline-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'ES256',
    },
  ],
  jwks: { keys: [jwk as never] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  features: {
    devInteractions: { enabled: false },
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
