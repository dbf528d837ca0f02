import type { CodeFactorType } from '../../domain/authn/code-factors.ts';
import type { SecondFactor } from '../../domain/authn/sign-in-flow.ts';
import { codeOf, type SecondFactorMethod } from './second-factor.ts';
import type { InteractionDeps, Shared } from './shared.ts';

/**
 * The /mfa methods whose code is sent to the user: a text to the enrolled phone, a mail to the
 * account's address. Nothing is sent when the page loads: its "Send a code" button posts
 * `action=send` (CSRF-checked like every form; the one-time-code cooldown and quota bound resends),
 * then the page comes back with the code form. The destination is shown masked.
 */
export function sentCodeMethods(deps: InteractionDeps, shared: Shared): SecondFactorMethod[] {
  const { codeFactors } = deps.account;
  const method = (name: CodeFactorType, factor: SecondFactor): SecondFactorMethod => ({
    name,
    factor,
    usable: async (user) => (await codeFactors.destination(user, name)) !== undefined,
    async prepare(ctx, _details, user) {
      return {
        sentTo: await codeFactors.destination(user, name),
        // After a send (its redirect) or a code posted: the code form has the focus.
        sent: ctx.query.sent === '1' || (ctx.method === 'POST' && (ctx.request.body as Record<string, unknown>).action !== 'send'),
      };
    },
    async send(ctx, details, user) {
      await codeFactors.sendSignInCode(user, name, shared.localeOf(ctx, details));
    },
    async verify(user, body, context) {
      const code = codeOf(body).replace(/\s+/g, '');
      return code ? codeFactors.verifySignInCode(user, name, code, context) : 'missing';
    },
  });
  return [method('sms', 'sms'), method('email', 'email_otp')];
}
