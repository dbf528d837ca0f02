import type { Middleware } from 'koa';
import { openWriteWindow, type WindowKind } from '../../oidc/held-writes.ts';
import type { HeldWritesOutcome } from '../../oidc/adapter.ts';

/**
 * Write windows (oidc/held-writes.ts) around the provider's resumed authorization (after the login
 * pages) and its token endpoint: their writes go out in one statement, before the answer is sent.
 * Whatever is still held when the provider is done is written here. A token request whose
 * redemption lost to a concurrent one (a code or refresh token used twice) is answered
 * invalid_grant, as the provider answers a consume that failed; its grant is revoked by then.
 */
export function heldWrites(paths: { authorization: string; token: string }, settle: () => Promise<HeldWritesOutcome>): Middleware {
  const kindOf = (method: string, path: string): WindowKind | undefined => {
    if (method === 'POST' && path === paths.token) return 'redemption';
    if (method === 'GET' && path.startsWith(`${paths.authorization}/`)) return 'resume';
    return undefined;
  };
  return async (ctx, next) => {
    const kind = kindOf(ctx.method, ctx.path);
    if (!kind || !openWriteWindow(kind)) return next();
    let outcome: HeldWritesOutcome;
    try {
      await next();
    } finally {
      // Whatever the answer, what the provider wrote is stored, as it would have been at once.
      outcome = await settle();
    }
    if (outcome === 'reused' && ctx.status < 400) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_grant', error_description: 'grant request is invalid' };
    }
  };
}
