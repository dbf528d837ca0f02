import type { Context } from 'koa';

/**
 * What metrics and traces name a request by: our routers' matched template ("/api/v1/users/:id")
 * or the provider's route name ("oidc:token"); undefined when nothing matched. Never the raw path:
 * ids and scanners' made-up paths would give every request a series (or span name) of its own.
 */
export function routeTemplate(ctx: Context): string | undefined {
  const matched = (ctx as { _matchedRoute?: unknown })._matchedRoute;
  if (typeof matched === 'string') return matched;
  const oidcRoute = (ctx as { oidc?: { route?: unknown } }).oidc?.route;
  return typeof oidcRoute === 'string' ? `oidc:${oidcRoute}` : undefined;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** The request method, or `other` for any method outside the standard ones (bounded label values). */
export function knownMethod(method: string, other: string): string {
  return KNOWN_METHODS.has(method) ? method : other;
}
