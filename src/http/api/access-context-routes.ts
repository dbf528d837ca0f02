import { z } from 'zod';
import type { Roles } from '../../domain/access/roles.ts';
import type { AccountOperation } from './account-routes.ts';

const tenantRef = z.object({ id: z.string(), slug: z.string() });

export const accessContext = z.object({
  tenant: tenantRef.describe("The user's tenant"),
  roles: z.array(z.object({ id: z.uuid(), name: z.string(), typeId: z.string().nullable() })),
  permissions: z.array(z.object({ resource: z.string(), scope: z.string() })).describe("The union of the roles' permissions, each pair once"),
  memberships: z.array(z.object({ tenant: tenantRef, roles: z.array(z.string()) }))
    .describe('The tenants the user belongs to, with the names of the roles held in each (one: a user belongs to one tenant)'),
});

/** GET /api/v1/me/access-context: what the signed-in user may do, for the applications they use. */
export function accessContextOperations(roles: Pick<Roles, 'accessContext'>): AccountOperation[] {
  return [
    {
      method: 'get', path: '/me/access-context', auth: 'user', firstPartyOnly: true,
      summary: 'Your tenant, roles, the permissions they grant and your memberships',
      response: { status: 200, schema: accessContext },
      async handle(_ctx, { caller }) {
        return roles.accessContext(caller!.accountId);
      },
    },
  ];
}
