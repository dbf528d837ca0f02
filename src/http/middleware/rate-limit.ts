import type { Context, Middleware } from 'koa';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../../domain/errors.ts';

/** Counts a request against a limiter; over the limit answers 429 with Retry-After. */
export function rateLimit(limiter: RateLimiterAbstract, keyOf: (ctx: Context) => string): Middleware {
  return async (ctx, next) => {
    try {
      await limiter.consume(keyOf(ctx));
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      const ms = (limited as { msBeforeNext?: number }).msBeforeNext ?? 60_000;
      ctx.set('Retry-After', String(Math.ceil(ms / 1000)));
      throw new AppError('IDENT_RATE_LIMITED');
    }
    await next();
  };
}
