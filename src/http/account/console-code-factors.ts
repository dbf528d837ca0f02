import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { CodeFactors, CodeFactorType } from '../../domain/authn/code-factors.ts';
import { maskEmail } from '../../domain/authn/masking.ts';
import type { FactorSummary } from '../../domain/authn/mfa.ts';
import { AppError, type ErrorCode } from '../../domain/errors.ts';
import { negotiate, type MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';

/**
 * The account console's part for SMS and email codes, in its "Two-step verification" section: add
 * a phone (the number, then the texted code), add email codes (a code to the verified address),
 * each removable like every factor (console.ts's remove). Enrolment is a page answer, never a
 * redirect, so the code form follows the send; confirming redirects with a notice.
 */

/** What the console page shows of a pending enrollment: its id and where the code went (masked). */
export interface CodeFactorState {
  pending?: { type: CodeFactorType; factorId: string; sentTo?: string };
}

/** What console.ts lends this module: its signed-in checks, rendering and redirects. */
export interface ConsoleKit<Signed> {
  form: Middleware;
  consoleUrl: string;
  signedInPost(ctx: Context): Promise<Signed | undefined>;
  accountIdOf(signed: Signed): string;
  sessionUidOf(signed: Signed): string | undefined;
  render(ctx: Context, signed: Signed, state: { mfaError?: MessageKey; codeFactors?: CodeFactorState }, status?: number): Promise<void>;
  handle(work: (ctx: Context) => Promise<void>): Middleware;
  changeContext(ctx: Context, accountId: string): ChangeContext;
  seeOther(ctx: Context, url: string): void;
}

export const CODE_FACTOR_NOTICES: Record<string, MessageKey> = {
  mfa_sms: 'account.mfa.done.sms',
  mfa_email: 'account.mfa.done.email',
};

export const CODE_FACTOR_ACTIONS = (consoleUrl: string) => ({
  smsEnroll: `${consoleUrl}/mfa/sms/enroll`,
  smsConfirm: `${consoleUrl}/mfa/sms/confirm`,
  emailEnroll: `${consoleUrl}/mfa/email/enroll`,
  emailConfirm: `${consoleUrl}/mfa/email/confirm`,
});

/** The template data of this part, for the page console.ts renders. */
export function codeFactorsView(codeFactors: CodeFactors, user: UserRow, factors: readonly FactorSummary[], state: CodeFactorState = {}) {
  return {
    smsEnabled: codeFactors.smsEnabled,
    hasSms: factors.some((f) => f.type === 'sms'),
    hasEmail: factors.some((f) => f.type === 'email'),
    emailVerified: user.email_verified,
    maskedEmail: maskEmail(user.email),
    pending: state.pending,
  };
}

/** Refusals the user can act on, as messages on the console page. */
const REFUSALS: Partial<Record<ErrorCode, { message: MessageKey; status: number }>> = {
  IDENT_VALIDATION: { message: 'account.mfa.error.phone', status: 400 },
  IDENT_OTP_INVALID: { message: 'account.mfa.error.sent_code', status: 400 },
  IDENT_OTP_LOCKED: { message: 'account.mfa.error.code_locked', status: 429 },
  IDENT_OTP_COOLDOWN: { message: 'account.mfa.error.cooldown', status: 429 },
  IDENT_OTP_DAILY_QUOTA: { message: 'account.mfa.error.quota', status: 429 },
  IDENT_SMS_UNAVAILABLE: { message: 'account.mfa.error.sms_unavailable', status: 503 },
  IDENT_SMS_DISABLED: { message: 'account.mfa.error.sms_unavailable', status: 422 },
  IDENT_EMAIL_UNVERIFIED: { message: 'account.mfa.error.unverified', status: 422 },
  IDENT_MFA_FACTOR_NOT_FOUND: { message: 'account.mfa.error.setup_expired', status: 404 },
};

const FACTOR_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const text = (value: unknown): string => (typeof value === 'string' ? value : '');

export function codeFactorConsoleRoutes<Signed>(router: Router, codeFactors: CodeFactors, kit: ConsoleKit<Signed>) {
  const bodyOf = (ctx: Context) => (ctx.request.body ?? {}) as Record<string, unknown>;

  /** Runs `work`; a refusal in REFUSALS re-renders the page with its message (and the code form again when `retry`). */
  async function refusing(ctx: Context, signed: Signed, work: () => Promise<void>, retry?: CodeFactorState['pending']) {
    try {
      await work();
    } catch (err) {
      const refusal = err instanceof AppError ? REFUSALS[err.code] : undefined;
      if (!refusal) throw err;
      // A wrong code asks again for the same enrollment; anything else starts over.
      const again = err instanceof AppError && err.code === 'IDENT_OTP_INVALID' ? retry : undefined;
      await kit.render(ctx, signed, { mfaError: refusal.message, ...(again ? { codeFactors: { pending: again } } : {}) }, refusal.status);
    }
  }

  for (const type of ['sms', 'email'] as const) {
    router.post(
      `/mfa/${type}/enroll`,
      kit.form,
      kit.handle(async (ctx) => {
        const signed = await kit.signedInPost(ctx);
        if (!signed) return;
        await refusing(ctx, signed, async () => {
          // The mail or text is in the user's own language when they chose one, else the browser's.
          const locale = negotiate(ctx.state.uiLocale, ctx.get('accept-language'));
          const enrollment = type === 'sms'
            ? await codeFactors.enrollSms(kit.accountIdOf(signed), text(bodyOf(ctx).phone), locale)
            : await codeFactors.enrollEmail(kit.accountIdOf(signed), locale);
          await kit.render(ctx, signed, { codeFactors: { pending: { type, factorId: enrollment.factorId, sentTo: enrollment.sentTo } } });
        });
      }),
    );

    router.post(
      `/mfa/${type}/confirm`,
      kit.form,
      kit.handle(async (ctx) => {
        const signed = await kit.signedInPost(ctx);
        if (!signed) return;
        const body = bodyOf(ctx);
        const factorId = text(body.factor);
        // People write codes as "123 456": spaces are not part of the code.
        const code = text(body.code).replace(/\s+/g, '');
        const pending = { type, factorId };
        await refusing(ctx, signed, async () => {
          if (!FACTOR_ID.test(factorId)) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
          if (!/^\d{6}$/.test(code)) throw new AppError('IDENT_OTP_INVALID');
          const confirm = type === 'sms' ? codeFactors.confirmSms : codeFactors.confirmEmail;
          await confirm(kit.accountIdOf(signed), factorId, code, kit.sessionUidOf(signed), kit.changeContext(ctx, kit.accountIdOf(signed)));
          kit.seeOther(ctx, `${kit.consoleUrl}?done=mfa_${type}`);
        }, pending);
      }),
    );
  }
}
