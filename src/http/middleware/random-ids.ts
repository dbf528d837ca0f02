import { randomFillSync } from 'node:crypto';

// One call into the CSPRNG per 4 KiB instead of one (or two) per request, as randomUUID() does
// with its own cache. Every byte is handed out once.
const POOL_BYTES = 4096;
const pool = Buffer.alloc(POOL_BYTES);
let offset = POOL_BYTES;

/** `bytes` fresh random bytes as lowercase hex (request, trace and span ids). */
export function randomHex(bytes: number): string {
  if (offset + bytes > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}
