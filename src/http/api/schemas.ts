import { z } from 'zod';
import { ADMIN_SCOPES } from '../../domain/clients/admin-scopes.ts';
import { hasControlCharacters } from '../../domain/accounts/display-names.ts';
import { FACTOR_TYPES } from '../../domain/authn/mfa.ts';
import { MFA_POLICIES } from '../../domain/authn/mfa-policy.ts';
import { IDP_ALIAS } from '../../domain/federation/identity-providers.ts';
import { DEFAULT_OVERLAP_SECONDS, MAX_OVERLAP_SECONDS } from '../../domain/access/rotation-overlap.ts';

// One source for validation and for the OpenAPI document (routes.ts), so they cannot drift.

export const text = (max: number) => z.string().min(1).max(max);
// No control characters (NUL included) in names and similar display text.
export const displayText = (max: number) =>
  text(max).refine((v) => !hasControlCharacters(v), 'must not contain control characters');
export const locale = z.string().regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$/, 'must be a BCP 47 language tag').max(35);
export const idpAlias = z.string().regex(IDP_ALIAS, 'lower-case letters, digits and hyphens, 1-63, not starting or ending with a hyphen');
export const scopeToken = z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/, 'must be an RFC 6749 scope token');

export const pageQuery = z.object({
  page: z.coerce.number().int().min(1).max(1_000_000).default(1),
  pageSize: z.coerce.number().int().min(1).max(100).default(20),
});

export const userStatus = z.enum(['active', 'suspended', 'deactivated']);

export const userListQuery = pageQuery.extend({
  search: z.string().max(200).optional(),
  status: userStatus.optional(),
});

export const userCreate = z.strictObject({
  email: z.email().max(320),
  password: z.string().min(8).max(1024).optional(),
  emailVerified: z.boolean().optional(),
  givenName: displayText(200).optional(),
  familyName: displayText(200).optional(),
  locale: locale.optional(),
});

export const userUpdate = z.strictObject({
  email: z.email().max(320).optional(),
  password: z.string().min(8).max(1024).optional(),
  emailVerified: z.boolean().optional(),
  givenName: displayText(200).nullable().optional(),
  familyName: displayText(200).nullable().optional(),
  locale: locale.nullable().optional(),
});

export const user = z.object({
  id: z.uuid(),
  email: z.string(),
  emailVerified: z.boolean(),
  givenName: z.string().nullable(),
  familyName: z.string().nullable(),
  locale: z.string().nullable(),
  status: userStatus,
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  lastLoginAt: z.iso.datetime().nullable(),
});

const factorType = z.enum(FACTOR_TYPES);

/** One user with their second factors and lockout: GET /users/:id and the help-desk actions. */
export const userDetail = user.extend({
  mfa: z.object({
    enrolled: z.array(factorType).describe('Confirmed second factors: totp (authenticator app), webauthn (a security key or passkey, one entry each), sms (a verified phone), email (codes to the verified address), recovery (a set of recovery codes)'),
    required: z.boolean().describe('A sign-in asks this user for a second factor now under MFA_POLICY: always when required or phishing-resistant (without a factor the user enrols one at sign-in), with optional when a factor is confirmed (recovery codes alone never ask). The mfa_policy of a client may ask more of its own sign-ins'),
    locked: z.array(factorType).describe('Factors whose sign-in check is locked after 5 wrong codes (15 minutes)'),
  }),
  lock: z.object({
    locked: z.boolean().describe('Sign-ins are refused now'),
    lockedUntil: z.iso.datetime().nullable().describe('When every lock now in force ends; null when not locked'),
    failedAttempts: z.number().int().describe("The account's failed sign-ins (passwords and second factors) since its last sign-in or unlock; 0 once a lock has run out"),
    addressFailures: z.number().int().describe("Failed sign-ins with the account's address (by anyone) in the current LOCKOUT_DURATION_SECONDS window; LOCKOUT_THRESHOLD of them lock it"),
  }),
});

const resourceIdentifier = z
  .string()
  .max(2048)
  .refine((v) => URL.canParse(v) && !v.includes('#'), 'must be an absolute URI without a fragment')
  // The identifier is unique-indexed: a b-tree entry holds ~2.7 kB, so 2048 characters of
  // multi-byte text would fail in PostgreSQL (500) instead of here.
  .refine((v) => Buffer.byteLength(v, 'utf8') <= 2048, 'must be at most 2048 bytes in UTF-8');

export const resourceServerCreate = z.strictObject({
  identifier: resourceIdentifier,
  name: displayText(200).optional(),
  scopes: z.array(scopeToken).max(200),
  accessTokenFormat: z.enum(['jwt', 'opaque']).optional(),
  accessTokenTtl: z.number().int().min(60).max(86400).optional(),
  rbac: z.boolean().optional().describe("Role-based access (default false): a user's token carries only the requested scopes the user's roles grant here, a service account's only its roles' scopes"),
});

export const resourceServerUpdate = z.strictObject({
  name: displayText(200).nullable().optional(),
  scopes: z.array(scopeToken).max(200).optional(),
  accessTokenFormat: z.enum(['jwt', 'opaque']).optional(),
  accessTokenTtl: z.number().int().min(60).max(86400).nullable().optional(),
  rbac: z.boolean().optional(),
});

export const resourceServer = z.object({
  id: z.uuid(),
  identifier: z.string(),
  name: z.string().nullable(),
  scopes: z.array(z.string()),
  accessTokenFormat: z.enum(['jwt', 'opaque']),
  accessTokenTtl: z.number().int().nullable(),
  rbac: z.boolean(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

/** Space-separated RFC 6749 scope tokens, e.g. "read write". */
const scopeList = z.string().max(4096).regex(/^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$/, 'must be space-separated RFC 6749 scope tokens');

/**
 * RFC 7591 client metadata: known fields are typed here, anything else passes through to the
 * provider's own client schema, which validates it (and ignores what it does not know).
 */
export const clientMetadata = z.looseObject({
  redirect_uris: z.array(z.string().max(2048)).max(100).optional(),
  post_logout_redirect_uris: z.array(z.string().max(2048)).max(100).optional(),
  grant_types: z.array(z.string().max(256)).max(20).optional(),
  response_types: z.array(z.string().max(64)).max(10).optional(),
  token_endpoint_auth_method: z.string().max(64).optional(),
  scope: z.string().max(4096).optional(),
  client_name: displayText(200).optional(),
  first_party: z.boolean().optional(),
  require_pkce: z.boolean().optional(),
  introspection_allowed: z.boolean().optional(),
  registration_enabled: z.boolean().optional(),
  registration_password: z.enum(['required', 'optional']).optional(),
  registration_welcome_mail: z.boolean().optional(),
  registration_require_email_verification: z.boolean().optional(),
  mfa_policy: z.enum(MFA_POLICIES).optional()
    .describe("This client's MFA policy; its sign-ins follow the stricter of it and MFA_POLICY (a client cannot lower the deployment's)"),
  token_exchange_providers: z.array(idpAlias).max(50).optional()
    .describe('Aliases of the identity providers whose ID tokens (JWTs) this client may exchange at /token for tokens of the linked local user'),
  resource_scopes: z.record(resourceIdentifier, scopeList)
    .refine((grants) => Object.keys(grants).length <= 100, 'may name at most 100 resource servers')
    .optional()
    .describe('What this client may get by client_credentials: a registered resource server\'s identifier -> the space-separated scopes of it granted (e.g. {"https://api.example": "read"}); without an entry the client gets no token for that resource server'),
});

export const clientCreate = clientMetadata.extend({
  client_id: z.string().regex(/^[\w.:~-]{1,128}$/, 'must be 1-128 characters of [A-Za-z0-9_.:~-]').optional(),
  client_secret: z.string().min(32).max(512).optional(),
});

export const clientUpdate = clientMetadata;

export const client = clientMetadata.extend({
  client_id: z.string(),
  client_secret: z.string().optional().describe('Only in the answer that created or rotated it'),
  client_id_issued_at: z.number().int(),
});

export const clientSecret = z.object({ client_id: z.string(), client_secret: z.string() });

export const errorEnvelope = z.object({
  error: z.string(),
  message: z.string(),
  requestId: z.string(),
  timestamp: z.iso.datetime(),
  /** IDENT_PASSWORD_POLICY only: too_short, too_long, too_weak, breached. */
  reasons: z.array(z.enum(['too_short', 'too_long', 'too_weak', 'breached'])).optional(),
});

export const page = <T extends z.ZodType>(item: T) =>
  z.object({ data: z.array(item), page: z.number().int(), pageSize: z.number().int(), total: z.number().int() });

export const adminScope = z.enum(ADMIN_SCOPES);

/** A rotation's overlap: how long `replaced` (the old key or secret) keeps working, on every instance. */
export const overlapSeconds = (replaced: string) =>
  z.number().int().min(0).max(MAX_OVERLAP_SECONDS).optional()
    .describe(`How long ${replaced} keeps working, in seconds, on every instance (default ${DEFAULT_OVERLAP_SECONDS}, a day; at most ${MAX_OVERLAP_SECONDS}; 0: it stops at once)`);
