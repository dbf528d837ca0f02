import type { EphemeralStore } from './ephemeral/index.ts';

export interface SharedCacheOptions<T> {
  /** Names the invalidation channel; one per kind of record. */
  name: string;
  ttlMs: number;
  maxEntries?: number;
  load(key: string): Promise<T | undefined>;
  ephemeral: EphemeralStore;
}

interface Entry<T> {
  value: T | undefined;
  expiresAt: number;
}

/**
 * A read-through cache for records that are read on every request and changed rarely (clients,
 * resource servers). Each instance keeps its own copy, and a change on any instance is broadcast
 * through the ephemeral store (Redis pub/sub across instances), so every copy drops the record at
 * once; the TTL bounds staleness should a broadcast be lost. "Not found" is cached too, so unknown
 * ids cannot hammer the database.
 */
export function createSharedCache<T>(opts: SharedCacheOptions<T>) {
  const entries = new Map<string, Entry<T>>();
  const inflight = new Map<string, Promise<T | undefined>>();
  const maxEntries = opts.maxEntries ?? 10_000;
  const channel = `cache-invalidate:${opts.name}`;
  let generation = 0;

  const drop = (key: string) => {
    generation++;
    entries.delete(key);
    inflight.delete(key);
  };
  const ready = opts.ephemeral.subscribe(channel, drop);

  return {
    ready,
    async get(key: string): Promise<T | undefined> {
      const hit = entries.get(key);
      if (hit && hit.expiresAt > Date.now()) return hit.value;
      const pending = inflight.get(key);
      if (pending) return pending;
      const startedAt = generation;
      const load = opts.load(key).then(
        (value) => {
          inflight.delete(key);
          // A change broadcast while this load ran may have made its result stale: don't keep it.
          if (generation === startedAt) {
            if (entries.size >= maxEntries) entries.delete(entries.keys().next().value as string);
            entries.set(key, { value, expiresAt: Date.now() + opts.ttlMs });
          }
          return value;
        },
        (err: unknown) => {
          inflight.delete(key);
          throw err;
        },
      );
      inflight.set(key, load);
      return load;
    },
    /** Call after changing the record: every instance's copy is dropped. */
    async invalidate(key: string): Promise<void> {
      drop(key);
      await opts.ephemeral.publish(channel, key);
    },
  };
}

export type SharedCache<T> = ReturnType<typeof createSharedCache<T>>;
