import { AppError } from '../errors.ts';

/** Scopes of the admin API; a token carries only those its client was registered with. */
export const ADMIN_SCOPES = [
  'iam.clients:read',
  'iam.clients:create',
  'iam.clients:update',
  'iam.clients:delete',
  'iam.resource-servers:read',
  'iam.resource-servers:create',
  'iam.resource-servers:update',
  'iam.resource-servers:delete',
  'iam.idps:read',
  'iam.idps:create',
  'iam.idps:update',
  'iam.idps:delete',
  'iam.users:read',
  'iam.users:create',
  'iam.users:update',
  'iam.users:suspend',
  'iam.users:delete',
  'iam.audit:read',
  'iam.webhooks:read',
  'iam.webhooks:create',
  'iam.webhooks:update',
  'iam.webhooks:delete',
  'iam.roles:read',
  'iam.roles:create',
  'iam.roles:update',
  'iam.roles:delete',
  'iam.apikeys:read',
  'iam.apikeys:create',
  'iam.apikeys:rotate',
  'iam.apikeys:revoke',
  'iam.service-accounts:read',
  'iam.service-accounts:create',
  'iam.service-accounts:rotate',
  'iam.service-accounts:delete',
  // Platform scopes: tenants themselves, and acting in another tenant with X-Tenant-Id. Only
  // clients of the default tenant may hold them (domain/tenants/tenant-scope.ts).
  'iam.tenants:read',
  'iam.tenants:create',
  'iam.tenants:update',
  'iam.tenants:delete',
] as const;

export type AdminScope = (typeof ADMIN_SCOPES)[number];

/** The admin API's resource indicator (RFC 8707) and token audience. */
export function adminAudience(issuer: string): string {
  return `${issuer}/api/v1`;
}

/** Admin tokens are short-lived JWTs: they cannot be revoked, so they must expire soon. */
export const ADMIN_TOKEN_TTL_SECONDS = 300;

/** Any iam.* value is an admin scope, known or not: the admin API's namespace. */
export const isAdminScope = (scope: string) => scope.startsWith('iam.');

/**
 * No caller ever gets more than it was given: whatever carries admin (iam.*) scopes (a client
 * today; identity providers and API keys later) may be seen, changed or handed out only by a
 * caller whose own token holds every one of those scopes. Answers the admin scopes in `scopes`
 * that `held` lacks; empty means within the caller's reach. Any iam.* value counts, known or not.
 */
export function adminScopesBeyond(scopes: string | readonly string[] | null | undefined, held: ReadonlySet<string>): string[] {
  const list = typeof scopes === 'string' ? scopes.split(' ') : (scopes ?? []);
  return [...new Set(list.filter((scope) => isAdminScope(scope) && !held.has(scope)))];
}

/** The admin scopes among `held`: what a listing filter passes to the store (see adminScopesBeyond). */
export function heldAdminScopes(held: ReadonlySet<string>): string[] {
  return [...held].filter(isAdminScope);
}

/**
 * Throws IDENT_FORBIDDEN naming the missing scopes when `scopes` reach beyond `held`; `what` starts
 * the message, e.g. "the client x is registered with".
 */
export function assertScopesWithinCaller(
  scopes: string | readonly string[] | null | undefined,
  held: ReadonlySet<string>,
  what: string,
): void {
  const beyond = adminScopesBeyond(scopes, held);
  if (beyond.length) {
    throw new AppError('IDENT_FORBIDDEN', `${what} admin scopes this token lacks: ${beyond.join(' ')}`);
  }
}
