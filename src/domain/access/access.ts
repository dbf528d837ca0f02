import type { Roles } from './roles.ts';
import type { ServiceAccounts } from './service-accounts.ts';

/** Roles and service accounts, as the token endpoint, the admin API and /me/access-context use them. */
export interface Access {
  roles: Roles;
  serviceAccounts: ServiceAccounts;
}

/** What token issuance reads: a holder's scopes at a resource server, role names, service accounts by client. */
export interface TokenAccess {
  roles: Pick<Roles, 'scopesAt' | 'roleNames'>;
  serviceAccounts: Pick<ServiceAccounts, 'byClientId'>;
}
