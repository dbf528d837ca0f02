import type { RateLimiterRes } from 'rate-limiter-flexible';
import { StoreUnavailable } from '../store-outage.ts';

/**
 * The store cannot hold another record without forgetting one it must keep. Answered 503
 * IDENT_UNAVAILABLE: refusing new work is safe, forgetting a lockout is not. Not an outage: the
 * store answers, so it never opens the circuit.
 */
export class EphemeralStoreFull extends StoreUnavailable {
  override readonly retryAfterSeconds: number = 60;
  constructor(store: 'redis' | 'memory', reason = 'the short-lived state store is full') {
    super(store, reason);
    this.name = 'EphemeralStoreFull';
  }
}

/**
 * A fixed-window rate limit: `consume` resolves while the key has points left and rejects with the
 * RateLimiterRes (not an Error) once it has none. rate-limiter-flexible's limiters are Limiters.
 */
export interface Limiter {
  consume(key: string, points?: number): Promise<RateLimiterRes>;
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
  /** When the key expires (undefined: absent, or kept without a TTL). For showing a lock's end, not for deciding. */
  expiresAt(key: string): Promise<Date | undefined>;
  ping(): Promise<void>;
  /**
   * A fixed-window limiter of `points` per `durationSeconds` on the same backend. It never fails for
   * want of its store: while Redis is unreachable it counts in this instance's memory instead.
   */
  limiter(name: string, points: number, durationSeconds: number): Limiter;
  /** Fire-and-forget broadcast to every instance (including this one) subscribed to `channel`. */
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, handler: (message: string) => void): Promise<void>;
  close(): Promise<void>;
}
