import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMultiTenant, signInTenant } from '../../src/domain/tenants/sign-in-tenant.ts';
import type { Tenant } from '../../src/domain/tenants/tenants.ts';

// The tenant rule of an authorization request, on a fixed set of tenants.
const at = new Date(0);
const TENANTS: Tenant[] = [
  { id: 'default', name: 'Default', slug: 'default', createdAt: at, updatedAt: at },
  { id: '6f1c0e6e-0000-4000-8000-000000000001', name: 'Acme', slug: 'acme', createdAt: at, updatedAt: at },
  { id: '6f1c0e6e-0000-4000-8000-000000000002', name: 'Globex', slug: 'globex', createdAt: at, updatedAt: at },
];
const tenants = { resolve: async (ref: string) => TENANTS.find((t) => t.id === ref || t.slug === ref.toLowerCase()) };
const [, acme, globex] = TENANTS as [Tenant, Tenant, Tenant];

describe('signInTenant', () => {
  it('a client signs in its own tenant; naming it (id or slug) is fine, another is organization_mismatch, an unknown one unknown_organization', async () => {
    assert.deepEqual(await signInTenant(tenants, { tenantId: acme.id }, undefined), { ok: true, tenantId: acme.id });
    assert.deepEqual(await signInTenant(tenants, {}, undefined), { ok: true, tenantId: 'default' });
    assert.deepEqual(await signInTenant(tenants, { tenantId: acme.id }, 'acme'), { ok: true, tenantId: acme.id });
    assert.deepEqual(await signInTenant(tenants, { tenantId: acme.id }, acme.id), { ok: true, tenantId: acme.id });
    assert.deepEqual(await signInTenant(tenants, { tenantId: acme.id }, 'globex'), { ok: false, why: 'organization_mismatch' });
    assert.deepEqual(await signInTenant(tenants, { tenantId: acme.id }, 'nope'), { ok: false, why: 'unknown_organization' });
  });

  it('a multi_tenant client of the default tenant takes the organization, and needs one', async () => {
    const platform = { tenantId: 'default', multiTenant: true };
    assert.equal(isMultiTenant(platform), true);
    assert.deepEqual(await signInTenant(tenants, platform, 'globex'), { ok: true, tenantId: globex.id });
    assert.deepEqual(await signInTenant(tenants, platform, ` ${globex.id} `), { ok: true, tenantId: globex.id });
    assert.deepEqual(await signInTenant(tenants, platform, undefined), { ok: false, why: 'organization_required' });
    assert.deepEqual(await signInTenant(tenants, platform, '  '), { ok: false, why: 'organization_required' });
    assert.deepEqual(await signInTenant(tenants, platform, 'nope'), { ok: false, why: 'unknown_organization' });
  });

  it('multi_tenant counts only in the default tenant: elsewhere the client is its own tenant\'s', async () => {
    const misplaced = { tenantId: acme.id, multiTenant: true };
    assert.equal(isMultiTenant(misplaced), false);
    assert.deepEqual(await signInTenant(tenants, misplaced, undefined), { ok: true, tenantId: acme.id });
    assert.deepEqual(await signInTenant(tenants, misplaced, 'globex'), { ok: false, why: 'organization_mismatch' });
  });
});
