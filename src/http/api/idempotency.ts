import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import { AppError } from '../../domain/errors.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import type { IdempotencyRepo } from '../../repos/idempotency.ts';

const WINDOW_SECONDS = 24 * 3600;
const VALID_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * Idempotency-Key: the first request with a key runs and its answer is kept for 24 h; a retry
 * with the same key and body gets that answer again, one with another body gets 409. Stored
 * answers are encrypted: a created client's secret must not sit readable in the database.
 */
export function createIdempotency(deps: { repo: IdempotencyRepo; box: SecretBox }) {
  const { repo, box } = deps;
  return async function withIdempotency(ctx: Context, callerId: string, run: () => Promise<void>): Promise<void> {
    const key = ctx.get('idempotency-key');
    if (!key) return run();
    if (!VALID_KEY.test(key)) throw new AppError('IDENT_VALIDATION', 'Idempotency-Key must be 1-255 printable ASCII characters');
    const scope = `${callerId} ${ctx.method} ${ctx.path}`;
    const hash = createHash('sha256').update(JSON.stringify(ctx.request.body ?? null)).digest('base64url');
    const aad = `idempotency:${scope}:${key}`;

    if (!(await repo.claim(scope, key, hash, WINDOW_SECONDS))) {
      const previous = await repo.find(scope, key);
      if (!previous) throw new AppError('IDENT_IDEMPOTENCY_IN_PROGRESS', 'retry this request');
      if (previous.request_hash !== hash) {
        throw new AppError('IDENT_IDEMPOTENCY_MISMATCH', 'this Idempotency-Key was used with a different request');
      }
      if (previous.status === null) throw new AppError('IDENT_IDEMPOTENCY_IN_PROGRESS', 'the first request with this key is still running');
      ctx.status = previous.status;
      ctx.body = JSON.parse(box.decrypt(previous.body as string, aad));
      ctx.set('Idempotent-Replayed', 'true');
      return;
    }
    try {
      await run();
    } catch (err) {
      // A failed first attempt leaves nothing behind: the client may retry with the same key.
      await repo.release(scope, key);
      throw err;
    }
    await repo.complete(scope, key, ctx.status, box.encrypt(JSON.stringify(ctx.body), aad));
  };
}

export type WithIdempotency = ReturnType<typeof createIdempotency>;
