import type { Context } from 'koa';
import { AppError } from '../../domain/errors.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { SecondFactorMethod } from './second-factor.ts';
import { detailsOf, flowContext, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';
import { verifyAddressStep } from './login.ts';
import { tenantOf } from './tenant.ts';

// The browser's WebAuthn answer, as the page's script posts it (views/assets/webauthn.js): JSON in
// the form field `response`. Assertions are about a kilobyte; anything far larger is not one.
const MAX_RESPONSE_LENGTH = 8192;

/** The posted answer, parsed; undefined when none was posted or it is not JSON. */
export function postedCredential(body: Record<string, unknown>): unknown {
  const raw = body.response;
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > MAX_RESPONSE_LENGTH) return undefined;
  try {
    return JSON.parse(raw) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The second step with a security key or passkey: the page carries the assertion options (a
 * challenge bound to this interaction and its pending account, made each time the page is shown)
 * and the script posts the answer.
 */
export function webauthnMethod(deps: InteractionDeps): SecondFactorMethod {
  const { webauthn } = deps.account;
  return {
    name: 'webauthn',
    factor: 'webauthn',
    invalid: 'error.webauthn_invalid',
    async prepare(_ctx, details, user) {
      return { webauthnOptions: JSON.stringify(await webauthn.secondFactorOptions(details.uid, user.id)) };
    },
    async verify(user, body, context, details) {
      const response = postedCredential(body);
      return response === undefined ? 'missing' : webauthn.verifySecondFactor(details.uid, user.id, response, context);
    },
  };
}

const PASSKEY_FAILURES: Record<'invalid' | 'locked' | 'inactive', { error: MessageKey; status: number }> = {
  invalid: { error: 'error.passkey_invalid', status: 401 },
  locked: { error: 'error.locked', status: 429 },
  inactive: { error: 'error.inactive', status: 403 },
};

/**
 * "Sign in with a passkey" on the login page: POST /passkey/options answers the assertion options
 * (JSON, no credential named, user verification required), POST /passkey takes the answer. The
 * passkey is the factor `passkey`, multi-factor on its own.
 */
export function passkeyStep(shared: Shared, signIn: SignIn, deps: InteractionDeps) {
  const { webauthn } = deps.account;
  const { renderLogin, limited } = shared;

  return {
    async options(ctx: Context) {
      const details = detailsOf(ctx);
      if (await limited(ctx, deps.flowLimiter)) throw new AppError('IDENT_RATE_LIMITED');
      ctx.body = await webauthn.passkeyOptions(details.uid);
    },

    async submit(ctx: Context) {
      const details = detailsOf(ctx);
      // Attempts share the sign-in budget of the address they come from, like passwords.
      if (await limited(ctx, deps.loginLimiter)) return renderLogin(ctx, details, { error: 'error.rate_limited' }, 429);
      const response = postedCredential(ctx.request.body as Record<string, unknown>);
      const outcome = response === undefined
        ? { ok: false as const, reason: 'invalid' as const }
        : await webauthn.signInWithPasskey(details.uid, response, tenantOf(details), flowContext(ctx, details));
      if (!outcome.ok) {
        const failure = PASSKEY_FAILURES[outcome.reason];
        return renderLogin(ctx, details, { error: failure.error }, failure.status);
      }
      await signIn.prove(ctx, details, outcome.user, 'passkey', { verifyAddress: verifyAddressStep(shared, deps, ctx, details, outcome.user) });
    },
  };
}
