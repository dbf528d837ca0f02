import type { Context } from 'koa';
import type { SecondFactorResult } from '../../domain/authn/mfa.ts';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { SecondFactor } from '../../domain/authn/sign-in-flow.ts';
import { AppError, type ErrorCode } from '../../domain/errors.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';

/**
 * One way to prove a second factor on the /mfa page. Each has its partial,
 * views/partials/mfa-{name}.eta, holding its form (posting `method` = name); the page offers the
 * others as links to ?method={name}.
 */
export interface SecondFactorMethod {
  /** The value of ?method= and of the posted `method`. */
  name: string;
  /** The factor a success proves (sign-in-flow.ts). */
  factor: SecondFactor;
  /** What a wrong or missing answer shows (default: the code was not right). */
  invalid?: MessageKey;
  /** Whether the user can use it now (a recovery set with no unused code left cannot). Default: yes. */
  usable?(user: UserRow): Promise<boolean>;
  /** What its partial shows, when the page is rendered for it (a challenge, a code just sent). */
  prepare?(ctx: Context, details: Details, user: UserRow): Promise<Record<string, unknown>>;
  /**
   * Methods whose code is sent on request (SMS, email): the page's send button posts `action=send`
   * here, never a page load, so a reload sends nothing. Throws the one-time-code scheme's refusals
   * (cooldown, quota, lock) and IDENT_SMS_UNAVAILABLE.
   */
  send?(ctx: Context, details: Details, user: UserRow): Promise<void>;
  /** Checks what the form posted; 'missing' when it posted nothing to check. */
  verify(user: UserRow, body: Record<string, unknown>, context: ChangeContext, details: Details): Promise<SecondFactorResult | 'missing'>;
}

export const codeOf = (body: Record<string, unknown>) => (typeof body.code === 'string' ? body.code.trim() : '');

/** The methods every deployment has: an authenticator app's code, and a recovery code instead. */
export function codeMethods(deps: InteractionDeps): SecondFactorMethod[] {
  const { mfa } = deps.account;
  return [
    {
      name: 'totp',
      factor: 'totp',
      async verify(user, body, context) {
        const code = codeOf(body);
        return code ? mfa.verifyTotp(user.id, code, context) : 'missing';
      },
    },
    {
      name: 'recovery',
      factor: 'recovery_code',
      usable: async (user) => (await mfa.remainingRecoveryCodes(user.id)) > 0,
      async verify(user, body, context) {
        const code = codeOf(body);
        return code ? mfa.useRecoveryCode(user.id, code, context) : 'missing';
      },
    },
  ];
}

const SEND_REFUSALS: Partial<Record<ErrorCode, { message: MessageKey; status: number }>> = {
  IDENT_OTP_COOLDOWN: { message: 'error.otp_cooldown', status: 429 },
  IDENT_OTP_DAILY_QUOTA: { message: 'error.otp_daily_quota', status: 429 },
  IDENT_OTP_LOCKED: { message: 'error.mfa_locked', status: 429 },
  IDENT_SMS_UNAVAILABLE: { message: 'error.sms_unavailable', status: 503 },
};

/** Runs a send; a refusal the user can act on is answered as a message on the page. */
async function sendRefusal(send: () => Promise<void>): Promise<{ message: MessageKey; status: number } | undefined> {
  try {
    await send();
    return undefined;
  } catch (err) {
    const refusal = err instanceof AppError ? SEND_REFUSALS[err.code] : undefined;
    if (!refusal) throw err;
    return refusal;
  }
}

/**
 * The second step (GET/POST /mfa): after a first factor, an account owing a second one proves it
 * with one of the methods the flow offers it (the first by default, the others a link away). Only
 * the account the flow record names can be asked for; without one the browser goes back to the
 * first step.
 */
export function secondFactorStep(shared: Shared, signIn: SignIn, deps: InteractionDeps, methods: readonly SecondFactorMethod[]) {
  const { accounts, renderPage, csrf, loginLimiter } = deps;
  const { localeOf, limited } = shared;

  async function pendingUser(details: Details): Promise<UserRow | undefined> {
    const accountId = signIn.pendingAccount(details);
    return accountId ? accounts.findActive(accountId) : undefined;
  }

  /** The methods this sign-in may use now, in the flow's order. */
  async function offered(details: Details, user: UserRow): Promise<SecondFactorMethod[]> {
    const options = await signIn.secondFactorOptions(details, user);
    const out: SecondFactorMethod[] = [];
    for (const factor of options) {
      for (const method of methods.filter((m) => m.factor === factor)) {
        if (!method.usable || (await method.usable(user))) out.push(method);
      }
    }
    return out;
  }

  const backToStart = (ctx: Context, details: Details) => {
    ctx.status = 303;
    ctx.redirect(`/interaction/${details.uid}`);
  };

  async function render(ctx: Context, details: Details, user: UserRow, choice: SecondFactorMethod, others: SecondFactorMethod[], error?: MessageKey, status = 200) {
    const action = `/interaction/${details.uid}/mfa`;
    renderPage(ctx, 'mfa', {
      title: 'mfa.title',
      locale: localeOf(ctx, details),
      method: choice.name,
      ...(choice.prepare ? await choice.prepare(ctx, details, user) : {}),
      action,
      others: others.filter((m) => m !== choice).map((m) => ({ name: m.name, url: `${action}?method=${m.name}` })),
      abortAction: `/interaction/${details.uid}/abort`,
      csrf: csrf.issue(details.uid),
      ...(error ? { error } : {}),
    }, status);
  }

  /** The pending user and the method asked for (the first offered when none or an unknown one is). */
  async function resolve(ctx: Context, name: unknown) {
    const details = detailsOf(ctx);
    const user = await pendingUser(details);
    if (!user) return { details };
    const usable = await offered(details, user);
    const choice = usable.find((m) => m.name === name) ?? usable[0];
    return { details, user, usable, choice };
  }

  return {
    async show(ctx: Context) {
      const { details, user, usable, choice } = await resolve(ctx, ctx.query.method);
      if (!user || !choice) return backToStart(ctx, details);
      await render(ctx, details, user, choice, usable);
    },

    async submit(ctx: Context) {
      const body = ctx.request.body as Record<string, unknown>;
      const { details, user, usable, choice } = await resolve(ctx, body.method);
      if (!user || !choice) return backToStart(ctx, details);
      const again = (error: MessageKey, status: number) => render(ctx, details, user, choice, usable, error, status);
      // Guesses share the sign-in budget of the address they come from.
      if (await limited(ctx, loginLimiter)) return again('error.rate_limited', 429);
      if (body.action === 'send' && choice.send) {
        const refused = await sendRefusal(() => choice.send!(ctx, details, user));
        if (refused) return again(refused.message, refused.status);
        // A page of its own again, so a reload does not send another code.
        ctx.status = 303;
        return ctx.redirect(`/interaction/${details.uid}/mfa?method=${choice.name}&sent=1`);
      }
      const result = await choice.verify(user, body, flowContext(ctx, details), details);
      if (result === 'missing') return again(choice.invalid ?? 'error.mfa_invalid', 400);
      if (result === 'invalid') return again(choice.invalid ?? 'error.mfa_invalid', 401);
      if (result === 'locked') return again('error.mfa_locked', 429);
      await signIn.prove(ctx, details, user, choice.factor);
    },
  };
}
