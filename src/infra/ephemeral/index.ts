import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { EphemeralStore } from './types.ts';

export type { EphemeralStore };
export { EphemeralStoreFull } from './types.ts';

/** Redis when configured; otherwise the in-process store, bounded to `memoryMaxEntries` records. */
export function createEphemeralStore(redisUrl: string | undefined, keyPrefix: string, memoryMaxEntries?: number): EphemeralStore {
  return redisUrl ? new RedisStore(redisUrl, keyPrefix) : new MemoryStore(memoryMaxEntries);
}
