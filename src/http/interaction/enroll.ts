import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { SecondFactor } from '../../domain/authn/sign-in-flow.ts';
import { groupSecret } from '../../domain/authn/totp.ts';
import { AppError } from '../../domain/errors.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';

/** What finishing an enrolment came to: the factor is proven, or the form is shown again with why. */
export type EnrolmentResult =
  | { ok: true }
  | { ok: false; error: MessageKey; status: number; /** What the partial shows again (nothing: start over). */ again?: Record<string, unknown> };

/**
 * One way to enrol a second factor inside a sign-in (GET/POST /mfa/enroll). Each has its partial,
 * views/partials/mfa-enroll-{name}.eta, shown after `start` with what it answered (a QR code, a
 * WebAuthn challenge) and holding the form that posts `step=finish`; the page offers each method
 * as a button that posts `step=start`.
 */
export interface EnrolmentMethod {
  /** The posted `method`. */
  name: string;
  /** The factor a finished enrolment proves for this sign-in (sign-in-flow.ts). */
  factor: SecondFactor;
  /** Starts an enrolment for `user`: what its partial shows. Shown in this answer only. */
  start(ctx: Context, details: Details, user: UserRow): Promise<Record<string, unknown>>;
  /** Finishes it from what the partial's form posted. */
  finish(ctx: Context, details: Details, user: UserRow, body: Record<string, unknown>, context: ChangeContext): Promise<EnrolmentResult>;
}

const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
const FACTOR_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An authenticator app: the secret as a QR code and as text, then a code from the app confirms it
 * (mfa.enrollTotp / confirmTotp, as in the account console: the same events, mail and bound on
 * wrong codes).
 */
export function totpEnrolment(deps: InteractionDeps): EnrolmentMethod {
  const { mfa } = deps.account;
  return {
    name: 'totp',
    factor: 'totp',
    async start(_ctx, _details, user) {
      const enrollment = await mfa.enrollTotp(user.id);
      return {
        factorId: enrollment.factorId,
        qrCode: enrollment.qrCode,
        secret: groupSecret(enrollment.secret),
        minutes: String(Math.round((enrollment.expiresAt.getTime() - Date.now()) / 60_000)),
      };
    },
    async finish(_ctx, details, user, body, context) {
      const factorId = text(body.factor);
      // Apps and people write codes as "123 456": spaces are not part of the code.
      const code = text(body.code)?.replace(/\s+/g, '') ?? '';
      if (!factorId || !FACTOR_ID.test(factorId)) return { ok: false, error: 'account.mfa.error.expired', status: 400 };
      // The secret is not shown again: a wrong code asks for the code of the same enrolment.
      const again = { factorId };
      if (!/^\d{6}$/.test(code)) return { ok: false, error: 'account.mfa.error.code_format', status: 400, again };
      // A browser signed in as this account keeps its session (the step-up's); every other session ends.
      const session = details.session?.accountId === user.id ? details.session.uid : undefined;
      try {
        await mfa.confirmTotp(user.id, factorId, code, session, context);
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        if (err.code === 'IDENT_OTP_INVALID') return { ok: false, error: 'account.mfa.error.code', status: 401, again };
        if (err.code === 'IDENT_OTP_LOCKED') return { ok: false, error: 'account.mfa.error.locked', status: 429 };
        if (err.code === 'IDENT_MFA_FACTOR_NOT_FOUND') return { ok: false, error: 'account.mfa.error.expired', status: 404 };
        throw err;
      }
      return { ok: true };
    },
  };
}

/**
 * Enrolment during a sign-in: after a first factor, an account that owes a second factor it has
 * none of (MFA_POLICY or the client's mfa_policy is required, or the request's acr_values ask for
 * mfa) sets one up here, and the factor it enrols is proven for this sign-in. Only the account the
 * flow record names, and only while the flow owes such a factor (an account with a factor proves
 * it on /mfa: enrolling another here would step around it); otherwise back to the first step.
 */
export function enrolmentStep(shared: Shared, signIn: SignIn, deps: InteractionDeps, methods: readonly EnrolmentMethod[]) {
  const { accounts, renderPage, csrf, loginLimiter } = deps;
  const { localeOf, limited } = shared;

  /** The pending user and the methods open to them now; no user when the flow owes no enrolment. */
  async function resolve(ctx: Context) {
    const details = detailsOf(ctx);
    const accountId = signIn.pendingAccount(details);
    const user = accountId ? await accounts.findActive(accountId) : undefined;
    if (!user) return { details };
    const factors = await signIn.enrollableFactors(details, user);
    const usable = methods.filter((m) => factors.includes(m.factor));
    return usable.length ? { details, user, usable } : { details };
  }

  const backToStart = (ctx: Context, details: Details) => {
    ctx.status = 303;
    ctx.redirect(`/interaction/${details.uid}`);
  };

  function render(ctx: Context, details: Details, usable: readonly EnrolmentMethod[], shown?: { method: EnrolmentMethod; data: Record<string, unknown> }, error?: MessageKey, status = 200) {
    renderPage(ctx, 'mfa-enroll', {
      title: 'enroll.title',
      locale: localeOf(ctx, details),
      action: `/interaction/${details.uid}/mfa/enroll`,
      methods: usable.map((m) => m.name),
      ...(shown ? { method: shown.method.name, enrolment: shown.data } : {}),
      abortAction: `/interaction/${details.uid}/abort`,
      csrf: csrf.issue(details.uid),
      ...(error ? { error } : {}),
    }, status);
  }

  return {
    async show(ctx: Context) {
      const { details, user, usable } = await resolve(ctx);
      if (!user) return backToStart(ctx, details);
      render(ctx, details, usable);
    },

    async submit(ctx: Context) {
      const body = ctx.request.body as Record<string, unknown>;
      const { details, user, usable } = await resolve(ctx);
      if (!user) return backToStart(ctx, details);
      const method = usable.find((m) => m.name === body.method);
      if (!method) return render(ctx, details, usable, undefined, 'enroll.choose', 400);
      // Starting and finishing share the sign-in budget of the address they come from.
      if (await limited(ctx, loginLimiter)) return render(ctx, details, usable, undefined, 'error.rate_limited', 429);
      // Answered with the page itself, never a redirect: a secret must not travel in a URL.
      if (body.step === 'start') return render(ctx, details, usable, { method, data: await method.start(ctx, details, user) });
      const result = await method.finish(ctx, details, user, body, flowContext(ctx, details));
      if (!result.ok) return render(ctx, details, usable, result.again && { method, data: result.again }, result.error, result.status);
      await signIn.prove(ctx, details, user, method.factor);
    },
  };
}
