import type { Context } from 'koa';
import type { MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';

type Method = 'totp' | 'recovery';

/**
 * The second step (GET/POST /mfa): after a first factor, an account with an authenticator proves
 * it with a TOTP code or, instead, one of its recovery codes. Only the account the flow record
 * names can be asked for; without one the browser goes back to the first step.
 */
export function secondFactorStep(shared: Shared, signIn: SignIn, deps: InteractionDeps) {
  const { accounts, account, renderPage, csrf, loginLimiter } = deps;
  const { localeOf, limited } = shared;

  async function pendingUser(details: Details): Promise<UserRow | undefined> {
    const accountId = signIn.pendingAccount(details);
    return accountId ? accounts.findActive(accountId) : undefined;
  }

  const backToStart = (ctx: Context, details: Details) => {
    ctx.status = 303;
    ctx.redirect(`/interaction/${details.uid}`);
  };

  async function render(ctx: Context, details: Details, user: UserRow, method: Method, error?: MessageKey, status = 200) {
    const action = `/interaction/${details.uid}/mfa`;
    const hasRecovery = (await account.mfa.remainingRecoveryCodes(user.id)) > 0;
    renderPage(ctx, 'mfa', {
      title: 'mfa.title',
      locale: localeOf(ctx, details),
      method,
      action,
      recoveryUrl: hasRecovery ? `${action}?method=recovery` : undefined,
      abortAction: `/interaction/${details.uid}/abort`,
      csrf: csrf.issue(details.uid),
      ...(error ? { error } : {}),
    }, status);
  }

  const methodOf = (value: unknown): Method => (value === 'recovery' ? 'recovery' : 'totp');

  return {
    async show(ctx: Context) {
      const details = detailsOf(ctx);
      const user = await pendingUser(details);
      if (!user) return backToStart(ctx, details);
      await render(ctx, details, user, methodOf(ctx.query.method));
    },

    async submit(ctx: Context) {
      const details = detailsOf(ctx);
      const user = await pendingUser(details);
      if (!user) return backToStart(ctx, details);
      const body = ctx.request.body as Record<string, unknown>;
      const method = methodOf(body.method);
      const code = typeof body.code === 'string' ? body.code.trim() : '';
      if (!code) return render(ctx, details, user, method, 'error.mfa_invalid', 400);
      // Code guesses share the sign-in budget of the address they come from.
      if (await limited(ctx, loginLimiter)) return render(ctx, details, user, method, 'error.rate_limited', 429);

      const context = flowContext(ctx, details);
      const result = method === 'recovery'
        ? await account.mfa.useRecoveryCode(user.id, code, context)
        : await account.mfa.verifyTotp(user.id, code, context);
      if (result === 'invalid') return render(ctx, details, user, method, 'error.mfa_invalid', 401);
      if (result === 'locked') return render(ctx, details, user, method, 'error.mfa_locked', 429);
      await signIn.prove(ctx, details, user, method === 'recovery' ? 'recovery_code' : 'totp');
    },
  };
}
