import { AppError } from '../errors.ts';
import type { Tenants } from '../tenants/tenants.ts';
import type { IdentityDirectoryRepo } from '../../repos/identity-directory.ts';
import type { UserStatus } from '../../repos/users.ts';

/** A user as other services of the cluster resolve them (GET /internal/identity/users/:id). */
export interface DirectoryUser {
  id: string;
  tenantId: string;
  email: string;
  status: UserStatus;
  /** Names of the roles the user holds in their tenant, sorted. */
  roles: string[];
}

/** A service account's standing (GET /internal/identity/service-accounts/:clientId). */
export interface DirectoryServiceAccount {
  clientId: string;
  serviceAccountId: string;
  tenantId: string;
  /** Its client can still get tokens (client_credentials among its grant types). */
  active: boolean;
}

/**
 * What the internal endpoints answer about users and service accounts. Reads only; unknown ids are
 * 404s with the catalogue's codes.
 */
export function createIdentityDirectory(deps: { repo: IdentityDirectoryRepo; tenants: Pick<Tenants, 'resolve'> }) {
  const { repo } = deps;

  async function user(id: string): Promise<DirectoryUser> {
    const row = await repo.user(id);
    if (!row) throw new AppError('IDENT_USER_NOT_FOUND', 'no user with this id');
    return { id: row.id, tenantId: row.tenant_id, email: row.email, status: row.status, roles: await repo.roleNames(row.id) };
  }

  return {
    user,

    /**
     * The user linked to an upstream subject. `issuer` names the identity provider by its issuer
     * (OpenID Connect), entity id (SAML) or alias; `tenant` (id or slug) narrows the search when
     * providers of several tenants share an issuer, which is otherwise refused (400) rather than
     * answered with an arbitrary one.
     */
    async userByExternal(issuer: string, subject: string, tenant?: string): Promise<DirectoryUser> {
      let tenantId: string | undefined;
      if (tenant !== undefined) {
        const found = await deps.tenants.resolve(tenant);
        if (!found) throw new AppError('IDENT_TENANT_NOT_FOUND', 'tenantId names no tenant (give its id or slug)');
        tenantId = found.id;
      }
      const links = await repo.usersByExternal(issuer, subject, tenantId);
      if (links.length === 0) throw new AppError('IDENT_USER_NOT_FOUND', 'no user is linked to this subject at an identity provider of this issuer, entity id or alias');
      if (links.length > 1) {
        throw new AppError('IDENT_VALIDATION', `identity providers of ${links.length} tenants have this issuer and link this subject: add ?tenantId=<id or slug>`);
      }
      return user(links[0]!.user_id);
    },

    async serviceAccount(clientId: string): Promise<DirectoryServiceAccount> {
      const row = await repo.serviceAccount(clientId);
      if (!row) throw new AppError('IDENT_SERVICE_ACCOUNT_NOT_FOUND', 'no service account with this client id');
      const grants = row.metadata.grant_types;
      return {
        clientId: row.client_id,
        serviceAccountId: row.id,
        tenantId: row.tenant_id,
        active: Array.isArray(grants) && grants.includes('client_credentials'),
      };
    },
  };
}

export type IdentityDirectory = ReturnType<typeof createIdentityDirectory>;
