import type { RequestStep } from './request-steps.ts';

/**
 * PostgreSQL text and jsonb cannot hold NUL, and no protocol parameter needs one: refuse such
 * query strings up front with a 400 instead of failing deep inside a database write.
 */
export function rejectNul(): RequestStep {
  return (ctx) => {
    const query = ctx.querystring;
    if (query && /%00|\u0000/i.test(query)) ctx.throw(400, 'request contains a NUL character');
  };
}
