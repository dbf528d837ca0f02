import { AppError, type ErrorCode } from '../../domain/errors.ts';
import type { MessageKey } from '../../i18n/index.ts';

/** What a page says for each refusal of the account flows. */
const PAGE_MESSAGES: Partial<Record<ErrorCode, MessageKey>> = {
  IDENT_OTP_INVALID: 'error.otp_invalid',
  IDENT_OTP_LOCKED: 'error.otp_locked',
  IDENT_OTP_COOLDOWN: 'error.otp_cooldown',
  IDENT_OTP_DAILY_QUOTA: 'error.otp_daily_quota',
  IDENT_PASSWORD_POLICY: 'error.password_policy',
  IDENT_CAPTCHA_INVALID: 'error.captcha',
  IDENT_CAPTCHA_REQUIRED: 'error.captcha_required',
  IDENT_RATE_LIMITED: 'error.rate_limited',
  IDENT_VALIDATION: 'error.invalid_input',
  IDENT_REGISTRATION_DISABLED: 'register.disabled',
};

const POLICY_REASONS: Record<string, MessageKey> = {
  too_short: 'policy.too_short',
  too_long: 'policy.too_long',
  too_weak: 'policy.too_weak',
  breached: 'policy.breached',
};

export interface PageError {
  status: number;
  error: MessageKey;
  reasons: MessageKey[];
}

/** An AppError the page can explain (its message key, status and policy reasons); rethrows the rest. */
export function pageErrorOf(err: unknown): PageError {
  if (!(err instanceof AppError)) throw err;
  const error = PAGE_MESSAGES[err.code];
  if (!error) throw err;
  return { status: err.status, error, reasons: policyReasonsOf(err) };
}

/** The message keys of the reasons an IDENT_PASSWORD_POLICY refusal carries (none for other errors). */
export function policyReasonsOf(err: AppError): MessageKey[] {
  const detail = err.detail as { reasons?: string[] } | undefined;
  return (detail?.reasons ?? []).filter((r) => Object.hasOwn(POLICY_REASONS, r)).map((r) => POLICY_REASONS[r]!);
}

/** A form field as a bounded string ('' when absent or not a string). */
export function field(body: unknown, name: string, max = 1024): string {
  const value = (body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' && value.length <= max && !value.includes('\u0000') ? value : '';
}

const EMAIL = /^[^\s@]{1,64}@[^\s@]{1,253}$/;

export function isEmail(value: string): boolean {
  return value.length <= 254 && EMAIL.test(value);
}

/** The interaction a standalone page returns to, when it is a well-formed interaction uid. */
export function interactionOf(value: unknown): string | undefined {
  return typeof value === 'string' && /^[\w-]{1,64}$/.test(value) ? value : undefined;
}
