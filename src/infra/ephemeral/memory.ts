import { EventEmitter } from 'node:events';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { EphemeralStoreFull, type EphemeralStore } from './types.ts';

interface Entry {
  value: string;
  expiresAt: number;
}

/**
 * In-process fallback used without REDIS_URL. Correct for a single instance only; the boot log
 * says so. Bounded so a flood of distinct keys cannot exhaust memory: when full, expired entries
 * go first, then the oldest cache record; security records are never evicted, a new one is refused
 * (EphemeralStoreFull) until room comes back.
 */
export class MemoryStore implements EphemeralStore {
  readonly kind = 'memory' as const;
  readonly #map = new Map<string, Entry>();
  /** Keys of cache records, oldest first: the only ones eviction may take. */
  readonly #evictable = new Set<string>();
  /** When a full store last scanned for expired entries; a scan per refused write would be costly. */
  #lastFullPurge = 0;
  readonly #bus = new EventEmitter();
  readonly #timer: NodeJS.Timeout;

  private readonly maxEntries: number;

  constructor(maxEntries = 100_000) {
    this.maxEntries = maxEntries;
    this.#timer = setInterval(() => this.#purge(), 30_000);
    this.#timer.unref();
  }

  #live(key: string): Entry | undefined {
    const e = this.#map.get(key);
    if (e && e.expiresAt <= Date.now()) {
      this.#delete(key);
      return undefined;
    }
    return e;
  }

  #delete(key: string): void {
    this.#map.delete(key);
    this.#evictable.delete(key);
  }

  #purge(): void {
    const now = Date.now();
    for (const [k, e] of this.#map) if (e.expiresAt <= now) this.#delete(k);
  }

  #put(key: string, value: string, ttlSeconds: number, evictable = false): void {
    if (this.#map.size >= this.maxEntries && !this.#map.has(key)) {
      if (Date.now() - this.#lastFullPurge >= 1000) {
        this.#lastFullPurge = Date.now();
        this.#purge();
      }
      if (this.#map.size >= this.maxEntries) {
        // Still full: only a cache record may make room (a Set keeps insertion order).
        const oldest = this.#evictable.values().next();
        if (oldest.done) throw new EphemeralStoreFull('memory');
        this.#delete(oldest.value);
      }
    }
    this.#map.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 });
    // Overwriting a cache record with a security record makes it one; a Set keeps the first order.
    if (evictable) this.#evictable.add(key);
    else this.#evictable.delete(key);
  }

  async get(key: string) {
    return this.#live(key)?.value;
  }
  async set(key: string, value: string, ttlSeconds: number, opts: { evictable?: boolean } = {}) {
    this.#put(key, value, ttlSeconds, opts.evictable);
  }
  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    if (this.#live(key)) return false;
    this.#put(key, value, ttlSeconds);
    return true;
  }
  async take(key: string) {
    const e = this.#live(key);
    this.#delete(key);
    return e?.value;
  }
  async incr(key: string, ttlSeconds: number) {
    const e = this.#live(key);
    const next = (e ? Number(e.value) : 0) + 1;
    if (e) e.value = String(next);
    else this.#put(key, String(next), ttlSeconds);
    return next;
  }
  async compareAndSwap(key: string, expected: string | undefined, next: string | undefined, ttlSeconds?: number) {
    if (expected === undefined && next !== undefined && ttlSeconds === undefined) throw new Error('compareAndSwap: creating a key needs a TTL');
    // Synchronous from the read to the write, so atomic within the process.
    const e = this.#live(key);
    if (e?.value !== expected) return false;
    if (next === undefined) this.#delete(key);
    else if (ttlSeconds !== undefined) this.#put(key, next, ttlSeconds);
    else if (e) e.value = next;
    return true;
  }
  async del(key: string) {
    this.#delete(key);
  }
  async expiresAt(key: string) {
    const e = this.#live(key);
    return e ? new Date(e.expiresAt) : undefined;
  }
  async ping() {}
  limiter(name: string, points: number, durationSeconds: number) {
    return new RateLimiterMemory({ keyPrefix: name, points, duration: durationSeconds });
  }
  async publish(channel: string, message: string) {
    this.#bus.emit(channel, message);
  }
  async subscribe(channel: string, handler: (message: string) => void) {
    this.#bus.on(channel, handler);
  }
  async close() {
    this.#bus.removeAllListeners();
    clearInterval(this.#timer);
  }
}
