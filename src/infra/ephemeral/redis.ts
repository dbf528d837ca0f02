import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { EphemeralStore } from './types.ts';

export class RedisStore implements EphemeralStore {
  readonly kind = 'redis' as const;
  readonly client: Redis;

  constructor(url: string, keyPrefix: string) {
    this.client = new Redis(url, { keyPrefix, maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false });
  }

  async get(key: string) {
    return (await this.client.get(key)) ?? undefined;
  }
  async set(key: string, value: string, ttlSeconds: number) {
    await this.client.set(key, value, 'EX', ttlSeconds);
  }
  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    return (await this.client.set(key, value, 'EX', ttlSeconds, 'NX')) === 'OK';
  }
  async take(key: string) {
    return (await this.client.getdel(key)) ?? undefined;
  }
  async incr(key: string, ttlSeconds: number) {
    const res = await this.client.multi().incr(key).expire(key, ttlSeconds, 'NX').exec();
    const [err, value] = res?.[0] ?? [new Error('redis transaction aborted'), 0];
    if (err) throw err;
    return Number(value);
  }
  async del(key: string) {
    await this.client.del(key);
  }
  async ping() {
    await this.client.ping();
  }
  limiter(name: string, points: number, durationSeconds: number) {
    // rate-limiter-flexible adds its own prefix; ioredis' keyPrefix applies underneath it.
    return new RateLimiterRedis({ storeClient: this.client, keyPrefix: name, points, duration: durationSeconds });
  }
  async close() {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
