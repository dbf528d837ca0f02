import type { z } from 'zod';
import { AppError } from '../../domain/errors.ts';

export function parse<T extends z.ZodType>(schema: T, value: unknown, where: string): z.output<T> {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issues = result.error.issues.map((i) => `${[where, ...i.path].join('.')}: ${i.message}`);
    throw new AppError('IDENT_VALIDATION', issues.join('; '), result.error.issues);
  }
  return result.data;
}

const MAX_BODY_DEPTH = 32;
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Refuses, anywhere in a JSON body (keys included), what cannot be stored as sent: NUL (PostgreSQL
 * text and jsonb reject it: a 500 from the insert) and unpaired surrogates (written to UTF-8 they
 * silently become U+FFFD). Also refuses deep nesting, which unknown client metadata could carry
 * into JSON.stringify (idempotency hash) and overflow the stack. Iterative for the same reason.
 */
export function checkBody(body: unknown): unknown {
  const stack: [unknown, number][] = [[body, 0]];
  while (stack.length) {
    const [value, depth] = stack.pop()!;
    if (typeof value === 'string') {
      if (value.includes('\u0000') || UNPAIRED_SURROGATE.test(value)) {
        throw new AppError('IDENT_VALIDATION', 'body: strings must not contain NUL characters or unpaired surrogates');
      }
    } else if (value !== null && typeof value === 'object') {
      if (depth >= MAX_BODY_DEPTH) throw new AppError('IDENT_VALIDATION', `body: nested deeper than ${MAX_BODY_DEPTH} levels`);
      for (const [k, v] of Object.entries(value)) stack.push([k, depth], [v, depth + 1]);
    }
  }
  return body;
}
