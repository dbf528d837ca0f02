import type { Logger } from '../logger.ts';
import { MemoryStore } from './memory.ts';
import { RedisStore } from './redis.ts';
import type { EphemeralStore } from './types.ts';

export type { EphemeralStore, Limiter } from './types.ts';
export { EphemeralStoreFull } from './types.ts';
export { RedisUnreachable } from './redis.ts';

export interface EphemeralSettings {
  redisUrl?: string | undefined;
  keyPrefix: string;
  redisCommandTimeoutMs: number;
  /** Bound of the in-process store, in records. */
  memoryMaxEntries?: number;
  logger: Logger;
}

/** Redis when configured (connected before this returns); otherwise the in-process store. */
export async function createEphemeralStore(settings: EphemeralSettings): Promise<EphemeralStore> {
  if (!settings.redisUrl) return new MemoryStore(settings.memoryMaxEntries);
  return RedisStore.open({
    url: settings.redisUrl,
    keyPrefix: settings.keyPrefix,
    commandTimeoutMs: settings.redisCommandTimeoutMs,
    logger: settings.logger,
  });
}
