import type { Middleware } from 'koa';

/**
 * PostgreSQL text and jsonb cannot hold NUL, and no protocol parameter needs one: refuse such
 * query strings up front with a 400 instead of failing deep inside a database write.
 */
export function rejectNul(): Middleware {
  return async (ctx, next) => {
    if (/%00|\u0000/i.test(ctx.querystring)) ctx.throw(400, 'request contains a NUL character');
    await next();
  };
}
