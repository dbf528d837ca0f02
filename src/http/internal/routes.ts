import Router from '@koa/router';
import type { Context } from 'koa';
import type { IdentityDirectory } from '../../domain/accounts/identity-directory.ts';
import { AppError } from '../../domain/errors.ts';
import { introspect } from '../../oidc/introspection.ts';
import type { Provider } from '../../oidc/provider.ts';

/** A form body of an introspection request is a token and a hint: a few KiB at most. */
const FORM_LIMIT = 16 * 1024;

/** The raw body, refused past `limit` bytes (413). */
async function readBody(ctx: Context, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new AppError('IDENT_PAYLOAD_TOO_LARGE', `the body exceeds ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const oauthError = (ctx: Context, error: string, description: string) => {
  ctx.status = 400;
  ctx.body = { error, error_description: description };
};

/**
 * The internal endpoints under /internal/identity (reference 002, section 9): cluster-only, no
 * bearer token; the listener in ./server.ts decides who may call them. User and service-account
 * answers are the directory's; errors carry the usual envelope. Introspection answers as RFC 7662
 * does (its errors are OAuth errors, as at the public introspection endpoint).
 */
export function internalRoutes(deps: { directory: IdentityDirectory; provider: () => Provider }) {
  const router = new Router({ prefix: '/internal/identity' });

  router.get('/users/by-external/:issuer/:subject', async (ctx) => {
    const tenant = typeof ctx.query.tenantId === 'string' && ctx.query.tenantId !== '' ? ctx.query.tenantId : undefined;
    if (Array.isArray(ctx.query.tenantId)) throw new AppError('IDENT_VALIDATION', 'query.tenantId: give it once');
    ctx.body = await deps.directory.userByExternal(ctx.params.issuer!, ctx.params.subject!, tenant);
  });

  router.get('/users/:id', async (ctx) => {
    ctx.body = await deps.directory.user(ctx.params.id!);
  });

  router.get('/service-accounts/:clientId', async (ctx) => {
    ctx.body = await deps.directory.serviceAccount(ctx.params.clientId!);
  });

  router.post('/tokens/introspect', async (ctx) => {
    if (!ctx.is('application/x-www-form-urlencoded')) {
      return oauthError(ctx, 'invalid_request', 'only application/x-www-form-urlencoded content-type bodies are supported on POST /internal/identity/tokens/introspect');
    }
    const form = new URLSearchParams(await readBody(ctx, FORM_LIMIT));
    for (const name of ['token', 'token_type_hint']) {
      if (form.getAll(name).length > 1) return oauthError(ctx, 'invalid_request', `'${name}' parameter must not be provided twice`);
    }
    const answer = await introspect(deps.provider(), {
      token: form.get('token') ?? undefined,
      token_type_hint: form.get('token_type_hint') ?? undefined,
    });
    ctx.status = answer.status;
    ctx.body = answer.body;
  });

  return router;
}
