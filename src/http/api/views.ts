import type { ClientRow } from '../../repos/clients.ts';
import type { ResourceServerRow } from '../../repos/resource-servers.ts';
import type { UserRow } from '../../repos/users.ts';
import type { UserDetail } from '../../domain/accounts/user-admin.ts';

// API representations. Password hashes and stored secrets have no field here, so no answer can carry them.

const iso = (d: Date | string) => new Date(d).toISOString();

export function userView(u: UserRow) {
  return {
    id: u.id,
    email: u.email,
    emailVerified: u.email_verified,
    givenName: u.given_name,
    familyName: u.family_name,
    locale: u.locale,
    status: u.status,
    createdAt: iso(u.created_at),
    updatedAt: iso(u.updated_at),
    lastLoginAt: u.last_login_at ? iso(u.last_login_at) : null,
  };
}

/** The help desk's view of one user: the user plus second factors and lockout. */
export function userDetailView(d: UserDetail) {
  return {
    ...userView(d.user),
    mfa: { enrolled: d.mfa.enrolled, required: d.mfa.required, locked: d.mfa.locked },
    lock: {
      locked: d.lock.locked,
      lockedUntil: d.lock.lockedUntil ? iso(d.lock.lockedUntil) : null,
      failedAttempts: d.lock.failedAttempts,
      addressFailures: d.lock.addressFailures,
    },
  };
}

/**
 * The scope a token needs to see or change each field of /api/v1/me, as userinfo maps claims to
 * scopes: email needs `email`; names, locale and time zone need `profile` (OIDC's zoneinfo is a
 * profile claim).
 */
export const ME_FIELD_SCOPES = {
  email: 'email',
  emailVerified: 'email',
  givenName: 'profile',
  familyName: 'profile',
  locale: 'profile',
  timezone: 'profile',
} as const;

/**
 * The signed-in user's own view (/api/v1/me): no status or last sign-in, plus time zone. A field
 * the caller's scopes do not cover is left out; the account's dates (created, password changed)
 * are account management, shown to first-party clients only. The id (the `sub`) is always there.
 */
export function meView(u: UserRow, caller: { scopes: ReadonlySet<string>; firstParty: boolean }) {
  const { id, email, emailVerified, givenName, familyName, locale, createdAt } = userView(u);
  const fields = { email, emailVerified, givenName, familyName, locale, timezone: u.timezone };
  const shown = Object.fromEntries(
    Object.entries(fields).filter(([name]) => caller.scopes.has(ME_FIELD_SCOPES[name as keyof typeof fields])),
  ) as Partial<typeof fields>;
  return {
    id,
    ...shown,
    ...(caller.firstParty ? { createdAt, passwordChangedAt: u.password_changed_at ? iso(u.password_changed_at) : null } : {}),
  };
}

export function resourceServerView(r: ResourceServerRow) {
  return {
    id: r.id,
    identifier: r.identifier,
    name: r.name,
    scopes: r.scopes,
    accessTokenFormat: r.access_token_format,
    accessTokenTtl: r.access_token_ttl,
    rbac: r.rbac === true,
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}

export function clientView(c: ClientRow, secret?: string) {
  return {
    ...(c.metadata as Record<string, unknown>),
    client_id: c.client_id,
    first_party: c.first_party,
    client_id_issued_at: Math.floor(new Date(c.created_at).getTime() / 1000),
    ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
  };
}
