import { Redis, ReplyError } from 'ioredis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import type { Logger } from '../logger.ts';
import { createStoreBreaker, StoreUnavailable, type StoreBreaker } from '../store-outage.ts';
import { EphemeralStoreFull, type EphemeralStore, type Limiter } from './types.ts';

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
  if (causes.some((e) => e instanceof Error && e.message.startsWith('OOM '))) throw new EphemeralStoreFull('redis', 'redis refused a write: maxmemory reached');
  throw err;
}

/**
 * An outage is a call Redis did not answer: a timeout, no connection, a connection lost mid-call.
 * An answer that is an error (ReplyError: OOM, a script error) means Redis is there.
 */
function isOutage(err: unknown): boolean {
  return err instanceof Error && !(err instanceof ReplyError) && !(err instanceof StoreUnavailable);
}

function describe(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (message === 'Command timed out') return 'command timed out';
  if (message.startsWith("Stream isn't writeable") || message.startsWith('Connection is closed')) return 'not connected';
  return message.slice(0, 200);
}

export interface RedisSettings {
  url: string;
  keyPrefix: string;
  /** Deadline of every command (REDIS_COMMAND_TIMEOUT_MS); also bounds each connection attempt. */
  commandTimeoutMs: number;
  logger: Logger;
}

/** Redis never answered at boot; the message names where it was looked for, never the password. */
export class RedisUnreachable extends Error {}

function redisHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return 'REDIS_URL';
  }
}

/** How long a boot waits for Redis to answer before it gives up with one line naming REDIS_URL. */
const BOOT_WAIT_MS = 10_000;

/**
 * Every call has a deadline and goes through a circuit breaker. While Redis is unreachable or hung,
 * rate limits count in this instance's memory (see limiter) and every other call fails at once with
 * StoreUnavailable: the records kept here are security state (lockouts, code locks, replay markers)
 * that must not be skipped or forgotten, so the request is refused with 503 instead.
 */
export class RedisStore implements EphemeralStore {
  readonly kind = 'redis' as const;
  readonly client: Redis;
  readonly #keyPrefix: string;
  readonly #logger: Logger;
  readonly #breaker: StoreBreaker;
  #subscriber: Redis | undefined;
  readonly #handlers = new Map<string, Array<(message: string) => void>>();

  private constructor(settings: RedisSettings) {
    this.client = new Redis(settings.url, {
      keyPrefix: settings.keyPrefix,
      lazyConnect: true,
      commandTimeout: settings.commandTimeoutMs,
      connectTimeout: settings.commandTimeoutMs,
      // A command in flight when the connection drops fails at once instead of waiting for a
      // reconnect, and while disconnected new commands fail at once: nothing queues without bound,
      // and nothing runs late, after its caller was answered.
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      // Reconnect for ever, backing off to one attempt every 2 s.
      retryStrategy: (attempt: number) => Math.min(100 * 2 ** (attempt - 1), 2000),
    });
    // Connection errors surface through the calls that fail and the breaker's log lines.
    this.client.on('error', (err: Error) => settings.logger.debug({ err: err.message }, 'redis connection error'));
    this.#keyPrefix = settings.keyPrefix;
    this.#logger = settings.logger;
    this.#breaker = createStoreBreaker('redis', settings.logger, isOutage, describe);
  }

  /** Connects, waiting at most BOOT_WAIT_MS for Redis to answer. */
  static async open(settings: RedisSettings): Promise<RedisStore> {
    const store = new RedisStore(settings);
    const { client } = store;
    let timer: NodeJS.Timeout | undefined;
    // The reason the last attempt failed (refused, unknown host, auth), for the boot's one line.
    let lastError = '';
    const noteError = (err: Error) => (lastError = err.message);
    client.on('error', noteError);
    try {
      await Promise.race([
        // connect() may reject on a first refused attempt while ioredis keeps retrying: wait for ready.
        new Promise<void>((resolve) => {
          client.once('ready', () => resolve());
          client.connect().catch(() => {});
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new RedisUnreachable(`Redis at ${redisHost(settings.url)} did not answer within ${BOOT_WAIT_MS / 1000} s${lastError ? ` (${lastError.slice(0, 160)})` : ''}`)),
            BOOT_WAIT_MS,
          );
        }),
      ]);
    } catch (err) {
      client.disconnect();
      throw err;
    } finally {
      clearTimeout(timer);
      client.off('error', noteError);
    }
    return store;
  }

  #call<T>(command: () => Promise<T>): Promise<T> {
    return this.#breaker.run(command);
  }

  async get(key: string) {
    return (await this.#call(() => this.client.get(key))) ?? undefined;
  }
  // Redis has no per-key eviction class: run it with noeviction, and every write, cache or not,
  // is refused when it is full.
  async set(key: string, value: string, ttlSeconds: number) {
    await this.#call(() => this.client.set(key, value, 'EX', ttlSeconds).catch(refusedWhenFull));
  }
  async setIfAbsent(key: string, value: string, ttlSeconds: number) {
    return (await this.#call(() => this.client.set(key, value, 'EX', ttlSeconds, 'NX').catch(refusedWhenFull))) === 'OK';
  }
  async take(key: string) {
    return (await this.#call(() => this.client.getdel(key))) ?? undefined;
  }
  async incr(key: string, ttlSeconds: number) {
    const res = await this.#call(() => this.client.multi().incr(key).expire(key, ttlSeconds, 'NX').exec().catch(refusedWhenFull));
    const [err, value] = res?.[0] ?? [new ReplyError('redis transaction aborted'), 0];
    if (err) refusedWhenFull(err);
    return Number(value);
  }
  async compareAndSwap(key: string, expected: string | undefined, next: string | undefined, ttlSeconds?: number) {
    if (expected === undefined && next !== undefined && ttlSeconds === undefined) throw new Error('compareAndSwap: creating a key needs a TTL');
    // ioredis applies keyPrefix to the KEYS of EVAL/EVALSHA too.
    const res = await this.#call(() =>
      this.client
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
        .catch(refusedWhenFull),
    );
    return res === 1;
  }
  async del(key: string) {
    await this.#call(() => this.client.del(key));
  }
  async expiresAt(key: string) {
    // PTTL: -2 absent, -1 no TTL.
    const ms = await this.#call(() => this.client.pttl(key));
    return ms >= 0 ? new Date(Date.now() + ms) : undefined;
  }
  async ping() {
    await this.#call(() => this.client.ping());
  }
  /**
   * Counts in Redis, shared by every instance. When Redis does not answer (or its circuit is open)
   * the same window counts in this instance's memory, as rate-limiter-flexible's insurance limiter
   * does, but decided here so that the breaker sees Redis fail: limits keep holding per instance
   * (N instances let through up to N times the limit) rather than refusing everyone.
   */
  limiter(name: string, points: number, durationSeconds: number): Limiter {
    // rate-limiter-flexible adds its own prefix; ioredis' keyPrefix applies underneath it.
    const shared = new RateLimiterRedis({ storeClient: this.client, keyPrefix: name, points, duration: durationSeconds, rejectIfRedisNotReady: true });
    const local = new RateLimiterMemory({ keyPrefix: name, points, duration: durationSeconds });
    return {
      consume: async (key: string, count = 1) => {
        try {
          return await this.#call(() => shared.consume(key, count));
        } catch (err) {
          if (err instanceof StoreUnavailable) return local.consume(key, count);
          throw err;
        }
      },
    };
  }
  // Channels are not prefixed by ioredis; prefix them so deployments sharing a Redis stay apart.
  // A lost broadcast is logged, not thrown: its receivers' copies expire by their TTL anyway.
  async publish(channel: string, message: string) {
    await this.#call(() => this.client.publish(this.#keyPrefix + channel, message)).catch((err: unknown) =>
      this.#logger.warn({ channel, reason: err instanceof StoreUnavailable ? err.reason : String(err) }, 'redis broadcast lost'),
    );
  }
  async subscribe(channel: string, handler: (message: string) => void) {
    if (!this.#subscriber) {
      // A subscribed connection can do nothing else, so it is a connection of its own. It queues
      // its SUBSCRIBE while reconnecting, and ioredis subscribes again after every reconnect.
      const subscriber = this.client.duplicate({ enableOfflineQueue: true });
      subscriber.on('error', (err: Error) => this.#logger.debug({ err: err.message }, 'redis subscriber connection error'));
      subscriber.on('message', (ch: string, message: string) => {
        for (const h of this.#handlers.get(ch) ?? []) h(message);
      });
      this.#subscriber = subscriber;
    }
    const full = this.#keyPrefix + channel;
    const list = this.#handlers.get(full) ?? [];
    list.push(handler);
    this.#handlers.set(full, list);
    await this.#subscriber.subscribe(full).catch((err: unknown) =>
      this.#logger.error({ channel, reason: describe(err) }, 'redis subscribe failed: cache invalidations from other instances are missed until their TTL'),
    );
  }
  async close() {
    if (this.#subscriber) await this.#subscriber.quit().catch(() => this.#subscriber?.disconnect());
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
