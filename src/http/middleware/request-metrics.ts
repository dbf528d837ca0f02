import type { Middleware } from 'koa';
import type { Metrics } from '../../infra/metrics.ts';

/**
 * Times every request under its route template: our routers' matched path ("/api/v1/users/:id"),
 * the provider's route name ("oidc:token"), or "unmatched". Never the raw path: ids and
 * scanners' made-up paths would give every request a series of its own.
 */
export function requestMetrics(metrics: Metrics): Middleware {
  return async (ctx, next) => {
    const stop = metrics.httpDuration.startTimer();
    try {
      await next();
    } finally {
      const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      const oidcRoute = (ctx as { oidc?: { route?: unknown } }).oidc?.route;
      const route = typeof matched === 'string' ? matched : typeof oidcRoute === 'string' ? `oidc:${oidcRoute}` : 'unmatched';
      stop({ method: KNOWN_METHODS.has(ctx.method) ? ctx.method : 'other', route, status: String(ctx.status) });
    }
  };
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
