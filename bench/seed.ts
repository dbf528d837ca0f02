/**
 * Seeds a fresh store for the benchmark, through the same services the server uses. Run with the
 * server's environment (DATA_DIR, DATABASE_URL, ...) before the server starts; prints one JSON line
 * on stdout: the client (id and secret), the resource server and the user (email and password).
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadConfig } from '../src/config/load.ts';
import { createServices } from '../src/services.ts';
import { DEFAULT_SCOPE } from '../src/domain/tenants/tenant-scope.ts';

const REDIRECT_URI = 'http://127.0.0.1:9/cb';
const RESOURCE = 'https://api.bench.test';

export interface Seeded {
  clientId: string;
  clientSecret: string;
  resource: string;
  redirectUri: string;
  user: { id: string; email: string; password: string };
}

async function main() {
  const config = loadConfig();
  // Logs go to stderr: stdout carries the JSON only.
  const logger = pino({ level: 'warn', base: { service: 'idp-bench-seed' } }, pino.destination(2));
  const services = await createServices(config, logger);
  try {
    await services.resourceServers.create(DEFAULT_SCOPE, {
      identifier: RESOURCE,
      name: 'Bench API',
      scopes: ['read', 'write'],
      accessTokenFormat: 'jwt',
    });
    // The resource server first: a client's grant must name a registered one.
    const client = await services.clients.register(DEFAULT_SCOPE, {
      metadata: {
        client_name: 'Bench client',
        grant_types: ['client_credentials', 'refresh_token', 'authorization_code'],
        response_types: ['code'],
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'client_secret_basic',
        introspection_allowed: true,
        // Its client_credentials tokens ask for this resource's `read` (bench/run.ts).
        resource_scopes: { [RESOURCE]: 'read' },
      },
      firstParty: true,
    });
    const password = `bench-${randomBytes(12).toString('base64url')}`;
    const email = 'bench.user@example.test';
    const user = await services.accounts.create({
      email,
      password,
      emailVerified: true,
      givenName: 'Bench',
      familyName: 'User',
    });
    const out: Seeded = {
      clientId: client.client_id,
      clientSecret: client.client_secret as string,
      resource: RESOURCE,
      redirectUri: REDIRECT_URI,
      user: { id: user.id, email, password },
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await services.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`seed failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
