import type { Context } from 'koa';
import type { SignInFailure } from '../../domain/authn/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import type { IdentityProvider } from '../../domain/federation/identity-providers.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';
import { tenantOf } from './tenant.ts';

const FAILURE_MESSAGES: Record<SignInFailure | 'rate_limited', MessageKey> = {
  invalid_credentials: 'error.invalid_credentials',
  locked: 'error.locked',
  inactive: 'error.inactive',
  rate_limited: 'error.rate_limited',
};

/** The password step (POST /login): a correct password is the factor `password`. */
export function loginStep(
  shared: Shared,
  signIn: SignIn,
  deps: InteractionDeps,
  /** Home-realm discovery: the upstream provider that serves an email's domain, and starting its sign-in. */
  providerForEmail: (email: string, tenantId: string) => Promise<IdentityProvider | undefined>,
  federate: (ctx: Context, details: Details, provider: IdentityProvider) => Promise<void>,
) {
  const { accounts, loginLimiter } = deps;
  const { renderLogin, limited } = shared;

  return {
    async submit(ctx: Context) {
      const details = detailsOf(ctx);
      const body = ctx.request.body as Record<string, unknown>;
      const email = typeof body.email === 'string' ? body.email : '';
      const password = typeof body.password === 'string' ? body.password : '';
      // An address of a domain an upstream provider serves signs in there, not with a password here.
      const tenantId = tenantOf(details);
      const home = email ? await providerForEmail(email, tenantId) : undefined;
      if (home) {
        if (await limited(ctx, loginLimiter)) return renderLogin(ctx, details, { error: FAILURE_MESSAGES.rate_limited, email }, 429);
        return federate(ctx, details, home);
      }
      if (!email || !password) return renderLogin(ctx, details, { error: 'error.missing_fields', email }, 400);

      if (await limited(ctx, loginLimiter)) return renderLogin(ctx, details, { error: FAILURE_MESSAGES.rate_limited, email }, 429);

      const outcome = await accounts.authenticate(email, password, tenantId, flowContext(ctx, details));
      if (!outcome.ok) {
        const status = outcome.reason === 'locked' ? 429 : outcome.reason === 'inactive' ? 403 : 401;
        return renderLogin(ctx, details, { error: FAILURE_MESSAGES[outcome.reason], email }, status);
      }
      const user = outcome.user;
      await signIn.prove(ctx, details, user, 'password', { verifyAddress: verifyAddressStep(shared, deps, ctx, details, user) });
    },
  };
}

/**
 * The code form for an address still to prove, after a first factor only the account's owner has
 * (a password, a passkey): asking them to verify reveals nothing, and the code typed in this
 * sign-in keeps the password.
 */
export function verifyAddressStep(shared: Shared, deps: InteractionDeps, ctx: Context, details: Details, user: UserRow) {
  return async () => {
    await deps.account.addressProof.bindRegistrant(user, [`interaction:${details.uid}`], 'password');
    try {
      await deps.account.verification.send(user, shared.localeOf(ctx, details));
    } catch (err) {
      // Within the cooldown the code sent moments ago still works.
      if (!(err instanceof AppError)) throw err;
    }
    shared.renderVerify(ctx, details, user.email);
  };
}
