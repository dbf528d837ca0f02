import type { RateLimiterAbstract } from 'rate-limiter-flexible';

/**
 * The store cannot hold another record without forgetting one it must keep. Answered 503
 * IDENT_UNAVAILABLE: refusing new work is safe, forgetting a lockout is not.
 */
export class EphemeralStoreFull extends Error {
  readonly status = 503;
  constructor(message = 'the short-lived state store is full') {
    super(message);
  }
}

/**
 * Short-lived shared state: counters with a TTL, one-time values, locks.
 *
 * Two kinds of record. Every write is a security record unless marked otherwise: lockouts, code
 * locks, attempt counters, cooldowns and quotas, CAPTCHA replay markers, one-time codes. Forgetting
 * one before its TTL would undo a protection, so a full store never evicts them: the write throws
 * EphemeralStoreFull instead. A cache record (`set` with `{ evictable: true }`) is one the caller can
 * do without, and may be dropped early to make room. The in-process store enforces this with its
 * entry bound; Redis must run with `maxmemory-policy noeviction`, where a full Redis refuses writes
 * (OOM), which RedisStore reports as the same EphemeralStoreFull. Rate-limit windows (`limiter`)
 * are not evicted on either backend.
 */
export interface EphemeralStore {
  readonly kind: 'redis' | 'memory';
  get(key: string): Promise<string | undefined>;
  set(key: string, value: string, ttlSeconds: number, opts?: { evictable?: boolean }): Promise<void>;
  /** Sets only when absent; true when this call set it (replay caches, locks). */
  setIfAbsent(key: string, value: string, ttlSeconds: number): Promise<boolean>;
  /** Reads and deletes atomically, for one-time values. */
  take(key: string): Promise<string | undefined>;
  /** Increments and returns the counter; the TTL starts with the first increment. */
  incr(key: string, ttlSeconds: number): Promise<number>;
  /**
   * Compare-and-swap: replaces the value only while it still equals `expected` (undefined: the key
   * is absent) and says whether it did. `next` undefined deletes the key. With `ttlSeconds` the key
   * gets that TTL, without it the current TTL is kept (then creating a key, expected undefined, needs
   * a TTL). For read-modify-write state such as attempt counters where a lost update matters.
   */
  compareAndSwap(key: string, expected: string | undefined, next: string | undefined, ttlSeconds?: number): Promise<boolean>;
  del(key: string): Promise<void>;
  ping(): Promise<void>;
  /** A fixed-window limiter of `points` per `durationSeconds` on the same backend. */
  limiter(name: string, points: number, durationSeconds: number): RateLimiterAbstract;
  /** Fire-and-forget broadcast to every instance (including this one) subscribed to `channel`. */
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, handler: (message: string) => void): Promise<void>;
  close(): Promise<void>;
}
