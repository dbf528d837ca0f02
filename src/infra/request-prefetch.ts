import { currentRequestScope } from './request-scope.ts';

/**
 * Rows read ahead for the request that is running, each handed out once. A refresh reads the
 * token, then its grant, then its account, one round trip each; the token's statement returns the
 * other two as well (the same snapshot), and the later reads of the same request take them from
 * here. Nothing outlives the request or serves another one, and a row is taken at most once: every
 * further read goes to the database, so a revocation is seen as before.
 */
export function offerToRequest(key: string, value: unknown): void {
  const scope = currentRequestScope();
  if (!scope) return;
  (scope.prefetched ??= new Map()).set(key, value);
}

export function takeFromRequest<T>(key: string): T | undefined {
  const rows = currentRequestScope()?.prefetched;
  if (!rows?.has(key)) return undefined;
  const value = rows.get(key) as T;
  rows.delete(key);
  return value;
}
