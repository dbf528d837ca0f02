import type { Context } from 'koa';
import type { RequestStep } from './request-steps.ts';
import { AppError } from '../../domain/errors.ts';

/** The first query parameter named more than once, if any. */
export function repeatedQueryParam(querystring: string): string | undefined {
  if (!querystring) return undefined;
  const seen = new Set<string>();
  for (const name of new URLSearchParams(querystring).keys()) {
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return undefined;
}

/**
 * Our pages and APIs take each query parameter once: a repeated one (ui_locales=en&ui_locales=vi)
 * would reach the code as an array where a string is expected. It is refused with 400 (envelope or
 * error page) on the routes `isOwnRoute` recognises; the provider's protocol endpoints are left to
 * judge their own parameters (they answer invalid_request to the relying party, as OAuth wants).
 */
export function rejectRepeatedQuery(isOwnRoute: (ctx: Context) => boolean): RequestStep {
  return (ctx) => {
    const repeated = repeatedQueryParam(ctx.querystring);
    if (repeated !== undefined && isOwnRoute(ctx)) {
      throw new AppError('IDENT_VALIDATION', `the query parameter "${repeated.slice(0, 64)}" is repeated; send it once`);
    }
  };
}
