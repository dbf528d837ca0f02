import http from 'node:http';
import Koa from 'koa';
import type { IdentityDirectory } from '../../domain/accounts/identity-directory.ts';
import { AppError } from '../../domain/errors.ts';
import type { Logger } from '../../infra/logger.ts';
import { StoreUnavailable } from '../../infra/store-outage.ts';
import type { Provider } from '../../oidc/provider.ts';
import { envelope } from '../middleware/errors.ts';
import { requestContext } from '../middleware/request-context.ts';
import { internalRoutes } from './routes.ts';

export interface InternalListenerDeps {
  directory: IdentityDirectory;
  /** The provider in force (it is rebuilt when the keys change). */
  provider: () => Provider;
  /** Whether a peer address (the socket's) may call: INTERNAL_ALLOWED_CIDRS. */
  allowed: (address: string | undefined) => boolean;
  logger: Logger;
}

/**
 * The internal listener's application: a Koa app of its own (not the provider's), so none of its
 * routes exists on the public port and none of the public routes exists here. Every request is
 * checked against the allowed networks by the connection's peer address; proxy headers are never
 * read (app.proxy stays false, and the check does not use ctx.ip at all).
 */
export function internalApp(deps: InternalListenerDeps): Koa {
  const app = new Koa({ proxy: false });
  const router = internalRoutes({ directory: deps.directory, provider: deps.provider });
  // One log line per request, as on the public port (path only, never a query or a body).
  app.use(requestContext(deps.logger));
  app.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    try {
      const peer = ctx.req.socket.remoteAddress;
      if (!deps.allowed(peer)) throw new AppError('IDENT_FORBIDDEN', 'this address may not call the internal endpoints (INTERNAL_ALLOWED_CIDRS)');
      await next();
      if (ctx.body == null && ctx.status >= 400) {
        const status = ctx.status;
        ctx.body = envelope(ctx, status === 405 ? 'IDENT_METHOD_NOT_ALLOWED' : 'IDENT_NOT_FOUND', status === 405 ? 'method not allowed here' : 'no such resource');
        ctx.status = status;
      }
    } catch (raw) {
      const unavailable = raw instanceof StoreUnavailable;
      const err = unavailable ? new AppError('IDENT_UNAVAILABLE') : raw;
      if (err instanceof AppError) {
        if (unavailable) ctx.set('Retry-After', String(raw.retryAfterSeconds));
        ctx.status = err.status;
        ctx.body = envelope(ctx, err.code, err.message);
      } else {
        deps.logger.error({ err, requestId: ctx.state.requestId }, 'unhandled error (internal listener)');
        ctx.status = 500;
        ctx.body = envelope(ctx, 'IDENT_INTERNAL', 'internal error');
      }
    }
  });
  app.use(router.routes());
  app.use(router.allowedMethods());
  return app;
}

/** The internal listener's HTTP server (not yet listening), with the public server's timeouts. */
export function internalServer(deps: InternalListenerDeps): http.Server {
  const server = http.createServer(internalApp(deps).callback());
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 30_000;
  return server;
}
