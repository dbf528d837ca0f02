import Router from '@koa/router';
import type { Context } from 'koa';
import { AppError } from '../domain/errors.ts';
import type { Federation } from '../domain/federation/federation.ts';
import { UpstreamRejected, type UpstreamIdentity } from '../domain/federation/upstream-oauth.ts';
import { CONSOLE_LINK_PREFIX, type FederationResult } from '../domain/federation/sign-in-records.ts';
import type { Logger } from '../infra/logger.ts';
import type { FederationBinding } from './federation-binding.ts';
import type { RenderPage } from './render.ts';

/**
 * The redirect URI of upstream OpenID Connect and OAuth 2.0 providers,
 * ISSUER/api/v1/auth/{oidc|oauth2}/{alias}/callback. The browser arrives without the interaction
 * cookie (its path is the interaction's), so this route only turns the upstream's answer into a
 * result for the interaction its `state` names, then sends the browser there to finish.
 */
export function federationCallbackRoutes(deps: { issuer: string; federation: Federation; binding: FederationBinding; renderPage: RenderPage; logger: Logger }) {
  const { federation, renderPage, logger } = deps;
  const router = new Router({ prefix: '/api/v1/auth' });

  const expired = (ctx: Context) => renderPage(ctx, 'message', { title: 'federation.title', text: 'federation.callback_expired' }, 400);

  const callback = (type: 'oidc' | 'oauth2') => async (ctx: Context) => {
    const { alias } = ctx.params as { alias: string };
    ctx.set('Cache-Control', 'no-store');
    const state = typeof ctx.query.state === 'string' ? ctx.query.state : '';
    // Taken once: a replayed callback finds nothing.
    const request = state ? await federation.records.takeRequest(state) : undefined;
    if (!request) return expired(ctx);
    const provider = (await federation.identityProviders.enabled()).find((p) => p.id === request.providerId);
    if (!provider || provider.alias !== alias || provider.type !== type || !('codeVerifier' in request.checks)) return expired(ctx);
    const checks = request.checks;
    // Another browser than the one that started (a forwarded authorization URL): nothing is recorded.
    if (!deps.binding.holds(ctx, request.binding)) {
      logger.warn({ provider: provider.alias }, 'upstream answer in a browser that did not start the sign-in: refused');
      return expired(ctx);
    }

    let result: FederationResult;
    try {
      // The exact URL the upstream sent the browser to: openid-client checks state, iss and code against it.
      const identity: UpstreamIdentity = await federation.upstream.identityFrom(provider, new URL(ctx.originalUrl, deps.issuer), checks);
      result = { providerId: provider.id, identity };
    } catch (err) {
      if (err instanceof AppError && err.code === 'IDENT_FEDERATION_UNAVAILABLE') {
        logger.warn({ provider: provider.alias, reason: err.message }, 'upstream identity provider unavailable');
        result = { providerId: provider.id, error: 'unavailable' };
      } else if (err instanceof UpstreamRejected) {
        logger.info({ provider: provider.alias, reason: err.message }, 'upstream sign-in refused');
        result = { providerId: provider.id, error: 'rejected' };
      } else throw err;
    }
    if (request.linkFor) {
      // A link from the account console: the console finishes it, for the session that started it.
      await federation.records.saveResult(request.uid, { ...result, linkFor: request.linkFor });
      ctx.status = 303;
      ctx.redirect(`/account/identities/linked?t=${encodeURIComponent(request.uid.slice(CONSOLE_LINK_PREFIX.length))}`);
      return;
    }
    await federation.records.saveResult(request.uid, result);
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(request.uid)}/federated`);
  };

  router.get('/oidc/:alias/callback', callback('oidc'));
  router.get('/oauth2/:alias/callback', callback('oauth2'));
  return router;
}
