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
  'iam.users:read',
  'iam.users:create',
  'iam.users:update',
  'iam.users:suspend',
  'iam.users:delete',
] as const;

export type AdminScope = (typeof ADMIN_SCOPES)[number];

/** The admin API's resource indicator (RFC 8707) and token audience. */
export function adminAudience(issuer: string): string {
  return `${issuer}/api/v1`;
}

/** Admin tokens are short-lived JWTs: they cannot be revoked, so they must expire soon. */
export const ADMIN_TOKEN_TTL_SECONDS = 300;
