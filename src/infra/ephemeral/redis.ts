import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import type { EphemeralStore } from './types.ts';

export class RedisStore implements EphemeralStore {
  readonly kind = 'redis' as const;
  readonly client: Redis;
  readonly #keyPrefix: string;
  #subscriber: Redis | undefined;
  readonly #handlers = new Map<string, Array<(message: string) => void>>();

  constructor(url: string, keyPrefix: string) {
    this.client = new Redis(url, { keyPrefix, maxRetriesPerRequest: 2, enableOfflineQueue: true, lazyConnect: false });
    this.#keyPrefix = keyPrefix;
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
  // Channels are not prefixed by ioredis; prefix them so deployments sharing a Redis stay apart.
  async publish(channel: string, message: string) {
    await this.client.publish(this.#keyPrefix + channel, message);
  }
  async subscribe(channel: string, handler: (message: string) => void) {
    if (!this.#subscriber) {
      // A subscribed connection can do nothing else, so it is a connection of its own.
      const subscriber = this.client.duplicate();
      subscriber.on('message', (ch: string, message: string) => {
        for (const h of this.#handlers.get(ch) ?? []) h(message);
      });
      this.#subscriber = subscriber;
    }
    const full = this.#keyPrefix + channel;
    const list = this.#handlers.get(full) ?? [];
    list.push(handler);
    this.#handlers.set(full, list);
    await this.#subscriber.subscribe(full);
  }
  async close() {
    if (this.#subscriber) await this.#subscriber.quit().catch(() => this.#subscriber?.disconnect());
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
