import type { Middleware } from 'koa';
import type { Metrics } from '../../infra/metrics.ts';

type Labels = { method: string; route: string; status: string };

// Label sets are few (methods × route templates × statuses); one object each is kept rather than
// one built per request (prom-client's startTimer copies its labels on every observation).
const MAX_LABEL_SETS = 2000;

/**
 * Times every request under its route template: our routers' matched path ("/api/v1/users/:id"),
 * the provider's route name ("oidc:token"), or "unmatched". Never the raw path: ids and
 * scanners' made-up paths would give every request a series of its own.
 */
export function requestMetrics(metrics: Metrics): Middleware {
  const labelSets = new Map<string, Labels>();
  const labelsFor = (method: string, route: string, status: string): Labels => {
    const key = `${method} ${status} ${route}`;
    let labels = labelSets.get(key);
    if (!labels) {
      labels = { method, route, status };
      if (labelSets.size < MAX_LABEL_SETS) labelSets.set(key, labels);
    }
    return labels;
  };
  return async (ctx, next) => {
    const started = performance.now();
    try {
      await next();
    } finally {
      const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
      const oidcRoute = (ctx as { oidc?: { route?: unknown } }).oidc?.route;
      const route = typeof matched === 'string' ? matched : typeof oidcRoute === 'string' ? `oidc:${oidcRoute}` : 'unmatched';
      const method = KNOWN_METHODS.has(ctx.method) ? ctx.method : 'other';
      metrics.httpDuration.observe(labelsFor(method, route, String(ctx.status)), (performance.now() - started) / 1000);
    }
  };
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);
