import { availableParallelism } from 'node:os';

/**
 * The work this process runs on libuv's thread pool at once, sized to the CPUs it may use.
 *
 * An argon2id hash is CPU work on a pool thread with a working buffer of ARGON2_MEMORY_KIB
 * (19 MiB by default). glibc keeps that buffer in the thread's malloc arena once freed, so every
 * pool thread that has ever hashed holds one for the life of the process: with the default pool
 * of 4, ~78 MB of resident memory after the first few sign-ins, whatever the CPU count. Freeing it
 * back each time instead (a fixed mmap threshold) makes each hash ~50% dearer (page faults).
 *
 * So hashes run at most one per CPU (more buys no throughput, only memory and cache misses), and
 * the pool has one thread more than that, never above libuv's default of 4, so a hash in progress
 * never holds up the pool's other work (WebCrypto signatures, DNS lookups, files). Pinned to one
 * CPU: one hash at a time, a pool of 2, at most two buffers resident.
 */
export const HASHES_AT_ONCE = Math.max(1, Math.min(availableParallelism(), 3));

/**
 * Sets the pool's size unless the operator did (UV_THREADPOOL_SIZE). libuv reads it when the pool
 * starts, at its first piece of work: main.ts imports this module before anything else.
 */
export function sizeThreadPool(env: NodeJS.ProcessEnv = process.env): void {
  if (!env.UV_THREADPOOL_SIZE) env.UV_THREADPOOL_SIZE = String(HASHES_AT_ONCE + 1);
}

/**
 * `limit` calls of `work` at once; the rest wait their turn, first come first served.
 */
export function concurrencyGate(limit: number) {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async function gated<T>(work: () => Promise<T>): Promise<T> {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    else running++;
    try {
      return await work();
    } finally {
      // The slot passes straight to the next in line (running stays the same), or frees.
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}
