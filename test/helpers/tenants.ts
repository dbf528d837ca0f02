import { randomBytes } from 'node:crypto';
import { registerClient, type Registered } from './rp.ts';
import type { TestServer } from './server.ts';

// Tenant fixtures for sign-in tests, in one place: tenants, users, resource servers and identity
// providers are made through the services in their tenant; clients through the registration
// helper, then moved to their tenant before anything reads them.

export interface TestTenant {
  id: string;
  slug: string;
}

/** A new tenant with a fresh slug (its id is a UUID, so id and slug differ). */
export async function createTenant(ts: TestServer, prefix = 'tenant'): Promise<TestTenant> {
  const slug = `${prefix}-${randomBytes(4).toString('hex')}`;
  const { id } = await ts.server.services.tenants.create({ name: `Tenant ${slug}`, slug });
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
  return ts.server.services.resourceServers.create({ tenantId }, spec);
}

/** An identity provider of `tenantId`. */
export async function createIdentityProviderIn(ts: TestServer, tenantId: string, input: Parameters<TestServer['server']['services']['identityProviders']['create']>[1]) {
  return ts.server.services.identityProviders.create({ tenantId }, input);
}
