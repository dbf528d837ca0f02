import { z } from 'zod';
import { displayText, locale, user } from './schemas.ts';
import { FACTOR_TYPES } from '../../domain/authn/mfa.ts';

// Bodies of the account API (/api/v1/auth/* and /api/v1/me*).

const email = z.email().max(254);
// New passwords are judged by the password policy (which names its reasons); here only the bounds.
const newPassword = z.string().min(1).max(1024);
const code = z.string().regex(/^\d{6}$/, 'must be the 6-digit code');
const token = z.string().min(16).max(256);
/** An IANA zone name the runtime knows (ICU accepts current and legacy names: Asia/Ho_Chi_Minh and Asia/Saigon). */
export function isTimeZone(value: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+){0,2}$/.test(value)) return false;
  try {
    new Intl.DateTimeFormat('en', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

const timezone = z.string().max(64).refine(isTimeZone, 'must be an IANA time zone such as Europe/Paris');

export const register = z.strictObject({
  email,
  password: newPassword.optional(),
  givenName: displayText(200).optional(),
  familyName: displayText(200).optional(),
  locale: z.enum(['en', 'vi']).optional(),
  captcha: z.string().max(4096).optional(),
  client_id: z.string().min(1).max(128).optional(),
});

/** The handle a registration answers; a proof that brings it back is the registrant's own (keeps the password). */
const registration = token.describe('The `registration` handle of the POST /auth/register answer, when the registrant verifies');
/** The client a flow outside an authorization runs for: its tenant's accounts (README "Tenants: where users sign in"); none: the default tenant. */
const flowClient = z.string().min(1).max(128).optional().describe("The client the flow is for: its tenant's account is meant (default: the default tenant)");
export const verifyEmail = z.union([
  z.strictObject({ email, code, registration: registration.optional(), client_id: flowClient }),
  z.strictObject({ token, registration: registration.optional() }),
]);

export const emailOnly = z.strictObject({ email, locale: z.enum(['en', 'vi']).optional(), client_id: flowClient });
export const resetRequest = emailOnly.extend({
  captcha: z.string().max(4096).optional().describe('A solved CAPTCHA: needed only past the address’s budget (IDENT_CAPTCHA_REQUIRED)'),
});

export const resetConfirm = z.union([
  z.strictObject({ email, code, password: newPassword, client_id: flowClient }),
  z.strictObject({ token, password: newPassword }),
]);

export const profileUpdate = z.strictObject({
  givenName: displayText(200).nullable().optional(),
  familyName: displayText(200).nullable().optional(),
  locale: locale.nullable().optional(),
  timezone: timezone.nullable().optional(),
});

export const passwordChange = z.strictObject({
  currentPassword: z.string().min(1).max(1024),
  newPassword,
});

// Answers (for the OpenAPI document).

export const accepted = z.object({ status: z.literal('accepted'), message: z.string() });
export const registered = accepted.extend({
  registration: z.string().describe('Opaque handle (the same shape whether or not the address was new): send it with the verification code so the chosen password is kept'),
});
export const statusOnly = z.object({ status: z.string() });
export const captchaChallenge = z.looseObject({}).describe('An ALTCHA challenge (altcha-lib), for the widget or solveChallenge');

/** Only the fields the token's scopes cover are present (see ME_FIELD_SCOPES in views.ts); the dates go to first-party clients only. */
export const me = user
  .pick({ id: true, email: true, emailVerified: true, givenName: true, familyName: true, locale: true, createdAt: true })
  .extend({ timezone: z.string().nullable(), passwordChangedAt: z.iso.datetime().nullable() })
  .partial()
  .required({ id: true });

export const sessionList = z.object({
  data: z.array(
    z.object({
      id: z.string().describe('The session’s public id (not its cookie)'),
      current: z.boolean().describe('The session the calling token was issued in'),
      userAgent: z.string().nullable(),
      ip: z.string().nullable(),
      signedInAt: z.iso.datetime(),
      lastUsedAt: z.iso.datetime(),
      expiresAt: z.iso.datetime().nullable(),
      clients: z.array(z.string()),
    }),
  ),
});

// Second factors (/api/v1/me/mfa*).

export const totpConfirm = z.strictObject({
  factorId: z.string().min(1).max(64).describe('The `factorId` of the enrollment answer'),
  code: code.describe('The current 6-digit code of the authenticator app'),
});

export const totpEnrollment = z.object({
  factorId: z.string(),
  secret: z.string().describe('Base32 secret, for typing into the app; shown only in this answer'),
  otpauthUri: z.string().describe('otpauth://totp/<issuer>:<email>?secret=...&issuer=...'),
  qrCode: z.string().describe('The otpauth URI as a QR code: a data:image/png;base64 URL'),
  expiresAt: z.iso.datetime().describe('Confirm before this (10 minutes); a new enrollment replaces a pending one'),
});

export const mfaFactor = z.object({
  id: z.string(),
  type: z.enum(FACTOR_TYPES),
  name: z.string(),
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime().nullable(),
  phone: z.string().optional().describe('sms factors: the number, masked (••• 78)'),
});

export const smsEnroll = z.strictObject({
  phone: z.string().min(1).max(64).describe('The phone number in international format (+country code), such as +84 90 123 45 67'),
});

export const smsEnrollment = z.object({
  factorId: z.string(),
  phone: z.string().describe('The number the code was texted to, masked (••• 78)'),
  expiresAt: z.iso.datetime().describe('The code expires then (5 minutes); confirm with it before'),
});

export const emailEnrollment = z.object({
  factorId: z.string(),
  expiresAt: z.iso.datetime().describe('The mailed code expires then (10 minutes); confirm with it before'),
});

export const codeConfirm = z.strictObject({
  factorId: z.string().min(1).max(64).describe('The `factorId` of the enrollment answer'),
  code: code.describe('The 6-digit code that was sent'),
});

export const mfaFactorList = z.object({ data: z.array(mfaFactor) });

export const recoveryCodes = z.object({
  codes: z.array(z.string()).describe('10 single-use codes (xxxxx-xxxxx), shown only in this answer; the earlier set no longer works'),
});

// Security keys and passkeys (/api/v1/me/mfa/webauthn/*, /api/v1/me/devices).

export const webauthnOptionsRequest = z.strictObject({
  kind: z.enum(['passkey', 'security-key']).describe('passkey: discoverable, user verification required, signs in without a password; security-key: a second factor after the password'),
});

/** The browser's answer (startRegistration of @simplewebauthn/browser); the ceremony checks the rest. */
const registrationResponse = z.looseObject({
  id: z.string().min(1).max(1024),
  rawId: z.string().min(1).max(1024),
  type: z.literal('public-key'),
  response: z.looseObject({
    clientDataJSON: z.string().min(1).max(8192),
    attestationObject: z.string().min(1).max(12288),
  }),
  clientExtensionResults: z.looseObject({}),
});

export const webauthnRegister = z.strictObject({
  response: registrationResponse.describe('PublicKeyCredential JSON from navigator.credentials.create (RegistrationResponseJSON)'),
  name: displayText(64).optional().describe('A name to tell it apart; "Passkey" or "Security key" when absent'),
});

export const webauthnCreationOptions = z.looseObject({}).describe('PublicKeyCredentialCreationOptionsJSON, for startRegistration or PublicKeyCredential.parseCreationOptionsFromJSON; its challenge works once, for 5 minutes');

export const device = z.object({
  id: z.string().describe('The factor id (DELETE /me/devices/:id or /me/mfa/:id remove it)'),
  name: z.string(),
  kind: z.enum(['passkey', 'security-key']),
  createdAt: z.iso.datetime(),
  lastUsedAt: z.iso.datetime().nullable(),
  backedUp: z.boolean().describe('A synced passkey (backed up by its provider)'),
  transports: z.array(z.string()),
});

export const deviceList = z.object({ data: z.array(device) });
