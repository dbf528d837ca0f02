import { AsyncLocalStorage } from 'node:async_hooks';

/** What is known about the HTTP request a piece of work runs for (the device behind a session). */
export interface RequestScope {
  userAgent?: string;
  ip?: string;
  /** The X-Request-Id of the request (events name it). */
  requestId?: string;
  /** The W3C trace the request belongs to (for calls onward and log lines deep in the work). */
  trace?: { traceId: string; spanId: string; flags: string };
  /**
   * The request's write window (oidc/held-writes.ts), kept on the scope itself rather than in a
   * WeakMap keyed by it: no map entry to add and remove on every request that has one.
   */
  writeWindow?: object | 'redemption';
  /** Rows read ahead for this request (infra/request-prefetch.ts), on the scope for the same reason. */
  prefetched?: Map<string, unknown>;
}

const storage = new AsyncLocalStorage<RequestScope>();

/** Runs `work` with `scope` visible to everything it calls, however deep (the provider's adapter). */
export function runInRequestScope<T>(scope: RequestScope, work: () => T): T {
  return storage.run(scope, work);
}

export function currentRequestScope(): RequestScope | undefined {
  return storage.getStore();
}
