import type { Context, Middleware } from 'koa';

/** A plain check or preparation of a request, done before any route runs; it throws to refuse the request. */
export type RequestStep = (ctx: Context) => void;

/**
 * Runs plain steps in order as one middleware. As koa layers of their own, each would cost a bound
 * dispatch and a promise on every request, the token endpoint's included (bench/ab.ts measured
 * this change at -10% server CPU per opaque client_credentials request).
 */
export function requestSteps(...steps: RequestStep[]): Middleware {
  return (ctx, next) => {
    for (const step of steps) step(ctx);
    return next();
  };
}
