import { isIPv6 } from 'node:net';
import type { Context, Middleware } from 'koa';
import type { Limiter } from '../../infra/ephemeral/index.ts';
import { AppError } from '../../domain/errors.ts';

/** Counts a request against a limiter; over the limit answers 429 with Retry-After. */
export function rateLimit(limiter: Limiter, keyOf: (ctx: Context) => string): Middleware {
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

/**
 * The key a per-IP limit counts a client address under. An IPv6 host usually gets a whole /64 (and
 * picks addresses in it at will, privacy extensions do so by themselves), so IPv6 addresses count
 * by their /64; IPv4 (and IPv4-mapped IPv6) addresses count one by one.
 */
export function ipLimitKey(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const address = ip.split('%')[0]!;
  if (!isIPv6(address)) return ip;
  const [head = '', tail] = address.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':').flatMap((g) => (g.includes('.') ? ['0', '0'] : [g])) : []);
  const left = groups(head);
  const right = groups(tail);
  const full = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${full.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16)).join(':')}::/64`;
}

/** The per-IP limit key of a request (ctx.ip honours TRUST_PROXY). */
export const clientLimitKey = (ctx: Context): string => ipLimitKey(ctx.ip);
