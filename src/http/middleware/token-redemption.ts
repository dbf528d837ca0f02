import type { Middleware } from 'koa';
import { openRedemptionWindow } from '../../oidc/held-redemption.ts';
import type { RedemptionOutcome } from '../../oidc/adapter.ts';

/**
 * The token endpoint's redemption window (oidc/held-redemption.ts): a code or refresh token
 * redeemed by this request is consumed, and what it issued stored, in one statement once the
 * provider has built its answer, and before the answer goes out. A redemption that lost to a
 * concurrent one (the token was used twice) is answered invalid_grant, as the provider answers
 * a consume that failed; its grant has been revoked by then.
 */
export function tokenRedemption(tokenPath: string, settle: () => Promise<RedemptionOutcome>): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'POST' || ctx.path !== tokenPath || !openRedemptionWindow()) return next();
    let outcome: RedemptionOutcome;
    try {
      await next();
    } finally {
      // Whatever the answer, a redemption the provider made is written, as its consume would have been.
      outcome = await settle();
    }
    if (outcome === 'reused' && ctx.status < 400) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_grant', error_description: 'grant request is invalid' };
    }
  };
}
