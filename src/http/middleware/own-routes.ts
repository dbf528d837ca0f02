import type Router from '@koa/router';
import type { Middleware } from 'koa';

/** What a mounted router contributes: its routes, and its 405/501 answers when asked for. */
export interface MountedRouter {
  router: Router;
  allowedMethods: boolean;
}

// The methods @koa/router implements by default: for any other, allowedMethods() answers 501
// even on a path no route matches, so such requests still go through the routers.
const ROUTER_METHODS = new Set(['HEAD', 'OPTIONS', 'GET', 'PUT', 'PATCH', 'POST', 'DELETE']);

/** Runs `middleware` in order around `next`, as koa-compose does. */
function chain(middleware: Middleware[]): Middleware {
  return (ctx, next) => {
    const step = (i: number): Promise<unknown> =>
      i === middleware.length ? next() : Promise.resolve(middleware[i]!(ctx, () => step(i + 1)));
    return step(0);
  };
}

/**
 * Our routers, in mount order, as one middleware. Each router matches the path against all of its
 * routes, so every request paid for every router; the provider's own endpoints (`providerPaths`:
 * /token, /token/introspection, /me ...) are the hot paths and none of our routes answers them,
 * so requests for them skip the routers altogether. A provider path one of our routers does
 * match, for any method, is not skipped (checked once, here).
 */
export function ownRoutes(mounted: MountedRouter[], providerPaths: readonly string[]): Middleware {
  const routes = chain(
    mounted.flatMap(({ router, allowedMethods }) => (allowedMethods ? [router.routes(), router.allowedMethods()] : [router.routes()]) as Middleware[]),
  );
  const providerOnly = new Set(
    providerPaths.filter((path) => !mounted.some(({ router }) => [...ROUTER_METHODS].some((method) => router.match(path, method).path.length > 0))),
  );
  return (ctx, next) => (providerOnly.has(ctx.path) && ROUTER_METHODS.has(ctx.method) ? next() : routes(ctx, next));
}
