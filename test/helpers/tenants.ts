import { randomBytes, randomUUID } from 'node:crypto';
import { registerClient, type Registered } from './rp.ts';
import type { TestServer } from './server.ts';

// Tenant fixtures for sign-in tests, in one place. The tenants API and tenant-scoped admin routes
// arrive in parallel (issue 16); until then tenants are rows, and clients, users and resource
// servers are made through the services and moved to their tenant. Switch these to the admin API
// (POST /api/v1/tenants, X-Tenant-Id) once it exists.

export interface TestTenant {
  id: string;
  slug: string;
}

/** A new tenant with a fresh slug (its id is a UUID, so id and slug differ). */
export async function createTenant(ts: TestServer, prefix = 'tenant'): Promise<TestTenant> {
  const slug = `${prefix}-${randomBytes(4).toString('hex')}`;
  const id = randomUUID();
  await ts.server.services.db('tenants').insert({ id, name: `Tenant ${slug}`, slug });
  return { id, slug };
}

/** A client of `tenantId` (registered, then moved there before anything reads it). */
export async function registerClientIn(ts: TestServer, tenantId: string, metadata: Record<string, unknown> = {}, firstParty = true): Promise<Registered> {
  const client = await registerClient(ts, metadata, firstParty);
  await ts.server.services.db('clients').where({ client_id: client.clientId }).update({ tenant_id: tenantId });
  return client;
}

/** A verified user of `tenantId` with this address and password. */
export async function createUserIn(ts: TestServer, tenantId: string, email: string, password: string) {
  const user = await ts.server.services.accounts.create({ email, password, emailVerified: true, givenName: 'Ada', tenantId });
  return { id: user.id, email, password, tenantId };
}

/** A resource server of `tenantId`. */
export async function createResourceServerIn(ts: TestServer, tenantId: string, spec: { identifier: string; scopes: string[]; accessTokenFormat: 'jwt' | 'opaque' }) {
  const rs = await ts.server.services.resourceServers.create(spec);
  await ts.server.services.db('resource_servers').where({ identifier: spec.identifier }).update({ tenant_id: tenantId });
  return rs;
}

/** An identity provider of `tenantId` (made in the default tenant, moved, then touched so every cached list sees it). */
export async function createIdentityProviderIn(ts: TestServer, tenantId: string, input: Parameters<TestServer['server']['services']['identityProviders']['create']>[0]) {
  const provider = await ts.server.services.identityProviders.create(input);
  await ts.server.services.db('identity_providers').where({ id: provider.id }).update({ tenant_id: tenantId });
  await ts.server.services.identityProviders.update(provider.id, { enabled: true });
  return provider;
}
