import { Redis } from 'ioredis';
import { RateLimiterRedis } from 'rate-limiter-flexible';
import { EphemeralStoreFull, type EphemeralStore } from './types.ts';

// KEYS[1]; ARGV: hasExpected ('1'|'0'), expected, hasNext, next, ttlSeconds ('' keeps the TTL).
const COMPARE_AND_SWAP = `
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if cur ~= ARGV[2] then return 0 end
elseif cur then
  return 0
end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
elseif ARGV[5] == '' then
  redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[5])
end
return 1`;

/** A write Redis refused for want of memory (maxmemory with noeviction) is the store being full. */
function refusedWhenFull(err: unknown): never {
  // In MULTI the refusal comes back as EXECABORT with the OOM among the queued commands' errors.
  const causes = [err, ...((err as { previousErrors?: unknown[] } | undefined)?.previousErrors ?? [])];
  if (causes.some((e) => e instanceof Error && e.message.startsWith('OOM '))) throw new EphemeralStoreFull('redis refused a write: maxmemory reached');
  throw err;
}

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
  // Redis has no per-key eviction class: run it with noeviction, and every write, cache or not,
  // is refused when it is full.
  async set(key: string, value: string, ttlSeconds: number) {
    await this.client.set(key, value, 'EX', ttlSeconds).catch(refusedWhenFull);
  }
  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    return (await this.client.set(key, value, 'EX', ttlSeconds, 'NX').catch(refusedWhenFull)) === 'OK';
  }
  async take(key: string) {
    return (await this.client.getdel(key)) ?? undefined;
  }
  async incr(key: string, ttlSeconds: number) {
    const res = await this.client.multi().incr(key).expire(key, ttlSeconds, 'NX').exec().catch(refusedWhenFull);
    const [err, value] = res?.[0] ?? [new Error('redis transaction aborted'), 0];
    if (err) refusedWhenFull(err);
    return Number(value);
  }
  async compareAndSwap(key: string, expected: string | undefined, next: string | undefined, ttlSeconds?: number) {
    if (expected === undefined && next !== undefined && ttlSeconds === undefined) throw new Error('compareAndSwap: creating a key needs a TTL');
    // ioredis applies keyPrefix to the KEYS of EVAL/EVALSHA too.
    const res = await this.client
      .eval(
        COMPARE_AND_SWAP,
        1,
        key,
        expected === undefined ? '0' : '1',
        expected ?? '',
        next === undefined ? '0' : '1',
        next ?? '',
        ttlSeconds === undefined ? '' : String(Math.max(1, Math.ceil(ttlSeconds))),
      )
      .catch(refusedWhenFull);
    return res === 1;
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
