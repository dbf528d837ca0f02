import { BrokenCircuitError, CircuitState, ConsecutiveBreaker, circuitBreaker, handleWhen } from 'cockatiel';
import type { Logger } from './logger.ts';

export type StoreName = 'database' | 'redis' | 'memory';

/**
 * A store this request needs did not answer in time, is unreachable, or its circuit is open.
 * Callers never retry it themselves: the request ends with 503 (IDENT_UNAVAILABLE on our routes).
 *
 * Its shape is also what node-oidc-provider answers as is when a store call fails inside one of its
 * endpoints: an exposed error whose status is 503 and whose message is the OAuth error code
 * `temporarily_unavailable` (RFC 6749 §4.1.2.1). So the token endpoint answers 503
 * {error: "temporarily_unavailable"} and the authorization endpoint sends that code back to the
 * client's redirect URI, instead of a 500 server_error.
 */
export class StoreUnavailable extends Error {
  readonly status: number = 503;
  readonly statusCode: number = 503;
  readonly expose = true;
  readonly allow_redirect = true;
  readonly error = 'temporarily_unavailable';
  readonly error_description: string = 'the service is temporarily unavailable; retry shortly';
  /** Seconds a caller should wait before retrying (the Retry-After header). */
  readonly retryAfterSeconds: number = 5;
  readonly store: StoreName;
  /** What happened, for the log line: never a key, value or query parameter. */
  readonly reason: string;

  constructor(store: StoreName, reason: string, options?: { cause?: unknown }) {
    super('temporarily_unavailable', options);
    this.name = 'StoreUnavailable';
    this.store = store;
    this.reason = reason;
  }
}

/** How many store calls in a row must fail before the circuit opens. */
export const BREAK_AFTER_CONSECUTIVE_FAILURES = 3;
/** How long an open circuit refuses calls before it lets one trial call through. */
export const HALF_OPEN_AFTER_MS = 2000;

export interface StoreBreaker {
  /**
   * Runs a store call through the circuit. A failure that `isOutage` recognises counts toward opening
   * it and is thrown as StoreUnavailable; while the circuit is open the call is not made and
   * StoreUnavailable is thrown at once. Other failures (a refused write, a constraint violation, a
   * rate limit's answer) pass through unchanged and do not count.
   */
  run<T>(call: () => Promise<T>): Promise<T>;
  readonly open: boolean;
}

/**
 * A circuit breaker around one store, so a dead or hung dependency is not hammered: after
 * BREAK_AFTER_CONSECUTIVE_FAILURES outages in a row every call fails at once; HALF_OPEN_AFTER_MS later
 * one trial call goes through (the others wait for its outcome, at most one deadline), and its success
 * closes the circuit again. Each transition is logged once.
 */
export function createStoreBreaker(
  store: StoreName,
  logger: Logger,
  isOutage: (err: unknown) => boolean,
  describe: (err: unknown) => string,
): StoreBreaker {
  const policy = circuitBreaker(handleWhen(isOutage), {
    halfOpenAfter: HALF_OPEN_AFTER_MS,
    breaker: new ConsecutiveBreaker(BREAK_AFTER_CONSECUTIVE_FAILURES),
  });
  policy.onBreak((failure) => {
    const reason = 'error' in failure ? describe(failure.error) : 'unknown';
    logger.error({ store, reason }, `${store} unavailable: circuit opened, calls fail at once for ${HALF_OPEN_AFTER_MS} ms`);
  });
  policy.onHalfOpen(() => logger.warn({ store }, `${store} circuit half-open: trying one call`));
  policy.onReset(() => logger.info({ store }, `${store} available again: circuit closed`));

  return {
    async run<T>(call: () => Promise<T>): Promise<T> {
      try {
        return await policy.execute(call);
      } catch (err) {
        if (err instanceof StoreUnavailable) throw err;
        if (err instanceof BrokenCircuitError) throw new StoreUnavailable(store, 'circuit open');
        if (isOutage(err)) throw new StoreUnavailable(store, describe(err), { cause: err });
        throw err;
      }
    },
    get open() {
      return policy.state !== CircuitState.Closed;
    },
  };
}
