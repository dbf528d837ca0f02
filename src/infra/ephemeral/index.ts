import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { EphemeralStore } from './types.ts';

export type { EphemeralStore };

export function createEphemeralStore(redisUrl: string | undefined, keyPrefix: string): EphemeralStore {
  return redisUrl ? new RedisStore(redisUrl, keyPrefix) : new MemoryStore();
}
