/**
 * The one catalogue of API error codes (IDENT_* after the identity service's contract). Every
 * error the admin and account APIs answer has one of these codes, its HTTP status and the envelope
 * {error, message, requestId, timestamp}. The README's table is generated from this list's order.
 */
export const ERROR_CODES = {
  IDENT_VALIDATION: { status: 400, meaning: 'The request body, query or path is malformed or fails validation' },
  IDENT_OTP_INVALID: { status: 400, meaning: 'The one-time code or link is wrong, expired or already used' },
  IDENT_PASSWORD_POLICY: { status: 400, meaning: 'The new password is too short, too long, too easy to guess or known from a data breach' },
  IDENT_CAPTCHA_INVALID: { status: 400, meaning: 'The CAPTCHA solution is missing, wrong, expired or already used' },
  IDENT_WEBAUTHN_INVALID: { status: 400, meaning: 'The WebAuthn answer does not verify, its challenge expired or was used, or the authenticator is registered already' },
  IDENT_CURRENT_PASSWORD_INVALID: { status: 400, meaning: 'The current password given to change it is wrong' },
  IDENT_UNAUTHENTICATED: { status: 401, meaning: 'No bearer token, or one that is invalid or expired' },
  IDENT_FORBIDDEN: { status: 403, meaning: 'The token lacks the scope this call needs, or an admin scope the client it addresses holds' },
  IDENT_ALLOWLIST_VIOLATION: { status: 403, meaning: "The upstream identity's email domain is not one the identity provider serves (its allowedDomains)" },
  IDENT_REGISTRATION_DISABLED: { status: 403, meaning: 'Self-registration is turned off for this application' },
  IDENT_CROSS_TENANT: { status: 403, meaning: "Attempt to touch foreign tenant: the object or the X-Tenant-Id named belongs to another tenant than the caller's" },
  IDENT_NOT_FOUND: { status: 404, meaning: 'No such route' },
  IDENT_USER_NOT_FOUND: { status: 404, meaning: 'User not in tenant' },
  IDENT_CLIENT_NOT_FOUND: { status: 404, meaning: 'No client with this client_id' },
  IDENT_RESOURCE_SERVER_NOT_FOUND: { status: 404, meaning: 'No resource server with this id' },
  IDENT_SESSION_NOT_FOUND: { status: 404, meaning: 'No active session of yours with this id' },
  IDENT_IDP_NOT_FOUND: { status: 404, meaning: 'No identity provider with this id' },
  IDENT_MFA_FACTOR_NOT_FOUND: { status: 404, meaning: 'No second factor (or pending enrollment) of yours with this id' },
  IDENT_WEBHOOK_NOT_FOUND: { status: 404, meaning: 'No webhook (or delivery of it) with this id' },
  IDENT_TENANT_NOT_FOUND: { status: 404, meaning: 'No tenant with this id or slug' },
  IDENT_ROLE_NOT_FOUND: { status: 404, meaning: 'No role with this id in the tenant' },
  IDENT_API_KEY_NOT_FOUND: { status: 404, meaning: 'No API key with this id in the tenant' },
  IDENT_SERVICE_ACCOUNT_NOT_FOUND: { status: 404, meaning: 'No service account with this id in the tenant' },
  IDENT_METHOD_NOT_ALLOWED: { status: 405, meaning: 'The route exists but not for this method' },
  IDENT_EMAIL_DUPLICATE: { status: 409, meaning: 'Email exists in tenant' },
  IDENT_CLIENT_DUPLICATE: { status: 409, meaning: 'A client with this client_id exists' },
  IDENT_CLIENT_BUILT_IN: { status: 409, meaning: 'The client is built in (bootstrap admin, account console) and is changed by its settings, not the API' },
  IDENT_IDP_DUPLICATE: { status: 409, meaning: 'An identity provider with this alias exists' },
  IDENT_RESOURCE_SERVER_DUPLICATE: { status: 409, meaning: 'A resource server with this identifier exists' },
  IDENT_TENANT_DUPLICATE: { status: 409, meaning: 'A tenant with this slug exists' },
  IDENT_TENANT_NOT_EMPTY: { status: 409, meaning: 'The tenant still has users, clients, resource servers, identity providers or webhooks (remove them first), or it is the default tenant' },
  IDENT_ROLE_DUPLICATE: { status: 409, meaning: 'A role with this name exists in the tenant' },
  IDENT_ROLE_BUILT_IN: { status: 409, meaning: 'The role is seeded (typeId admin 100, regular 001, guest 000): its permissions and description may change, not its name, and it cannot be deleted' },
  IDENT_EXT_IDENTITY_MISMATCH: { status: 409, meaning: 'The upstream identity cannot be linked: its email is missing or unverified, or it or the provider is linked to another account already' },
  IDENT_LAST_SIGN_IN_METHOD: { status: 409, meaning: 'This is your last way to sign in (no password, no other linked provider); add one before removing it' },
  IDENT_IDEMPOTENCY_MISMATCH: { status: 409, meaning: 'Same Idempotency-Key with a different request' },
  IDENT_IDEMPOTENCY_IN_PROGRESS: { status: 409, meaning: 'A request with this Idempotency-Key is still being processed' },
  IDENT_MFA_LAST_FACTOR: { status: 409, meaning: 'A second factor is required here: the last one (or, when phishing-resistant factors are required, the last security key or passkey) cannot be removed; enrol another first' },
  IDENT_PAYLOAD_TOO_LARGE: { status: 413, meaning: 'The body exceeds 1 MB' },
  IDENT_UNSUPPORTED_MEDIA_TYPE: { status: 415, meaning: 'The body is not application/json' },
  IDENT_USER_SUSPENDED: { status: 422, meaning: 'Action invalid for suspended user' },
  IDENT_USER_DEACTIVATED: { status: 422, meaning: 'Action invalid for deactivated user' },
  IDENT_EMAIL_UNVERIFIED: { status: 422, meaning: 'Email codes go to a verified address: verify the account\'s email first' },
  IDENT_SMS_DISABLED: { status: 422, meaning: 'SMS codes are turned off on this deployment (SMS_PROVIDER=off)' },
  IDENT_RATE_LIMITED: { status: 429, meaning: 'Too many requests; retry later' },
  IDENT_CAPTCHA_REQUIRED: { status: 429, meaning: 'This address had many requests; send a solved CAPTCHA to ask again' },
  IDENT_OTP_COOLDOWN: { status: 429, meaning: 'A code was sent moments ago; wait before asking for another' },
  IDENT_OTP_DAILY_QUOTA: { status: 429, meaning: 'The daily number of codes for this address or number is used up' },
  IDENT_OTP_LOCKED: { status: 429, meaning: 'Too many wrong codes; locked for this flow for 15 minutes' },
  IDENT_INTERNAL: { status: 500, meaning: 'Unexpected server error (details are logged, never returned)' },
  IDENT_SMS_UNAVAILABLE: { status: 503, meaning: 'The SMS provider did not take the message (unreachable, too slow or refusing); nothing was sent, ask again later' },
  IDENT_FEDERATION_UNAVAILABLE: { status: 503, meaning: 'Upstream IdP circuit open: the upstream identity provider did not answer in time or failed; retry later' },
  IDENT_UNAVAILABLE: { status: 503, meaning: 'A store this request needs (the database or Redis) did not answer in time, is unreachable or is full; retry after Retry-After seconds' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * A failure the caller can act on. `code` is the stable API code; its status comes from the
 * catalogue. Anything else that is thrown is answered as IDENT_INTERNAL.
 */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: unknown;

  constructor(code: ErrorCode, message?: string, detail?: unknown) {
    super(message ?? ERROR_CODES[code].meaning);
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.detail = detail;
  }
}

/**
 * A boot that cannot go on for a reason the operator must fix (a setting that does not match the
 * store). Entry points print its message as one line, without a stack trace, and exit 1.
 */
export class StartupError extends Error {}

/** PostgreSQL's unique_violation, from pg or PGlite. */
export function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}
