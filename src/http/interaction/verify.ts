import type { Context } from 'koa';
import { field, isEmail, pageErrorOf } from '../pages/flow-messages.ts';
import { detailsOf, flowContext, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';
import { tenantOf } from './tenant.ts';

/** The code form of a sign-in: POST /verify-email (the factor `email_code`) and its resend. */
export function verifyStep(shared: Shared, signIn: SignIn, deps: InteractionDeps) {
  const { account, flowLimiter } = deps;
  const { renderVerify, renderLogin, localeOf, limited } = shared;

  return {
    async submit(ctx: Context) {
      const details = detailsOf(ctx);
      const email = field(ctx.request.body, 'email', 254).trim();
      const code = field(ctx.request.body, 'code', 16).trim();
      if (await limited(ctx, flowLimiter)) return renderVerify(ctx, details, email, { error: 'error.rate_limited' }, 429);
      if (!isEmail(email) || !/^\d{6}$/.test(code)) return renderVerify(ctx, details, email, { error: 'error.otp_invalid' }, 400);
      let proof;
      try {
        // Only the account this sign-in registered (or proved the password of) is verified here.
        proof = await account.verification.verifyCode(tenantOf(details), email, code, [`interaction:${details.uid}`], flowContext(ctx, details), { onlyRegistrant: true });
      } catch (err) {
        const e = pageErrorOf(err);
        return renderVerify(ctx, details, email, { error: e.error }, e.status);
      }
      // The code proved the mailbox; an inactive account still cannot sign in.
      if (proof.user.status !== 'active') return renderLogin(ctx, details, { error: 'error.inactive', email }, 403);
      await signIn.prove(ctx, details, proof.user, 'email_code');
    },

    async resend(ctx: Context) {
      const details = detailsOf(ctx);
      const email = field(ctx.request.body, 'email', 254).trim();
      if (await limited(ctx, flowLimiter)) return renderVerify(ctx, details, email, { error: 'error.rate_limited' }, 429);
      if (isEmail(email)) account.verification.resend(tenantOf(details), email, localeOf(ctx, details), flowContext(ctx, details));
      renderVerify(ctx, details, email, { notice: 'verify.resent' });
    },
  };
}
