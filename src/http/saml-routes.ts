import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import { identityProviderActor } from '../domain/events/events.ts';
import type { Federation } from '../domain/federation/federation.ts';
import type { IdentityProvider, SamlSettings } from '../domain/federation/identity-providers.ts';
import type { RedirectMessage, SamlLogoutStatus } from '../domain/federation/saml-sp.ts';
import type { FederationResult } from '../domain/federation/sign-in-records.ts';
import { UpstreamRejected } from '../domain/federation/upstream-oauth.ts';
import { randomToken } from '../infra/crypto.ts';
import type { Logger } from '../infra/logger.ts';
import type { FederationBinding } from './federation-binding.ts';
import type { RenderPage } from './render.ts';

type SamlProvider = IdentityProvider & { type: 'saml'; saml: SamlSettings };

/** The signed part of an HTTP-Redirect query: these three, in this order, exactly as sent (SAML bindings 3.4.4.1). */
function redirectMessage(ctx: Context, kind: 'SAMLRequest'): RedirectMessage {
  const raw = new Map(ctx.querystring.split('&').map((pair) => [pair.split('=', 1)[0]!, pair] as const));
  const octetString = [kind, 'RelayState', 'SigAlg'].map((name) => raw.get(name)).filter((pair) => pair !== undefined).join('&');
  const query = Object.fromEntries(Object.entries(ctx.query).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  return { query, octetString };
}

/**
 * Our SAML service provider's endpoints, ISSUER/api/v1/auth/saml/{alias}/…: the metadata operators
 * give the IdP, single logout, and the assertion consumer service the IdP's page POSTs the response to. That POST
 * is cross-site and carries no interaction cookie, so, as the OIDC callback, the ACS only turns the
 * response into a result for the interaction its RelayState names and sends the browser there.
 */
export function samlRoutes(deps: { federation: Federation; binding: FederationBinding; renderPage: RenderPage; logger: Logger }) {
  const { federation, renderPage, logger } = deps;
  const router = new Router({ prefix: '/api/v1/auth/saml' });
  // A signed response with a few attributes is a few kB; 256 kB leaves room for big group lists.
  const form = bodyParser({ enableTypes: ['form'], formLimit: '256kb' });

  const expired = (ctx: Context) => renderPage(ctx, 'message', { title: 'federation.title', text: 'federation.callback_expired' }, 400);

  async function samlProvider(alias: string): Promise<SamlProvider | undefined> {
    const provider = await federation.identityProviders.enabledByAlias(alias);
    return provider?.type === 'saml' ? provider : undefined;
  }

  router.get('/:alias/metadata', async (ctx) => {
    const provider = await samlProvider(ctx.params.alias!);
    if (!provider) return ctx.throw(404, 'no such SAML provider');
    ctx.type = 'application/samlmetadata+xml';
    ctx.body = await federation.saml.metadata(provider);
  });

  router.post('/:alias/acs', form, async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const { alias } = ctx.params as { alias: string };
    const body = (ctx.request.body ?? {}) as Record<string, unknown>;
    const relayState = typeof body.RelayState === 'string' ? body.RelayState : '';
    const samlResponse = typeof body.SAMLResponse === 'string' ? body.SAMLResponse : '';
    // Taken once. No RelayState, or one we did not issue, is an unsolicited (IdP-initiated)
    // response: refused, since nothing ties it to a sign-in this browser started.
    const request = relayState ? await federation.records.takeRequest(relayState) : undefined;
    // The provider the request was made for (aliases are unique per tenant only), under this alias.
    const provider = request ? (await federation.identityProviders.enabled()).find((p): p is SamlProvider => p.id === request.providerId && p.alias === alias && p.type === 'saml') : undefined;
    if (!request || !provider || !('requestId' in request.checks) || !samlResponse) {
      logger.info({ provider: alias, relayState: relayState ? 'unknown' : 'none' }, 'SAML response without a pending request refused');
      return expired(ctx);
    }

    let result: FederationResult;
    try {
      result = { providerId: provider.id, identity: await federation.saml.identityFrom(provider, samlResponse, request.checks) };
    } catch (err) {
      if (!(err instanceof UpstreamRejected)) throw err;
      logger.info({ provider: provider.alias, reason: err.message }, 'SAML response refused');
      result = { providerId: provider.id, error: 'rejected' };
    }
    // The binding cookie did not come with this cross-site POST: the GET below checks it.
    const token = randomToken(24);
    await federation.records.saveHandoff(token, { uid: request.uid, binding: request.binding, result });
    ctx.status = 303;
    ctx.redirect(`/api/v1/auth/saml/${encodeURIComponent(provider.alias)}/continue?t=${token}`);
  });

  /**
   * IdP-initiated single logout (HTTP-Redirect): a LogoutRequest signed by the IdP ends every
   * session of the linked user here, and the browser goes back to the IdP's SingleLogoutService
   * with our signed LogoutResponse. One not shown to come from the IdP gets a 400 page and changes
   * nothing; one from the IdP we cannot honour gets a Requester status.
   */
  router.get('/:alias/slo', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const { alias } = ctx.params as { alias: string };
    const refused = () => renderPage(ctx, 'message', { title: 'logout.title', text: 'federation.logout_refused' }, 400);
    const provider = await samlProvider(alias);
    if (!provider || typeof ctx.query.SAMLRequest !== 'string') {
      logger.info({ provider: alias, known: Boolean(provider) }, 'SAML logout without a provider or a LogoutRequest refused');
      return refused();
    }
    let request;
    try {
      request = await federation.saml.logoutRequestFrom(provider, redirectMessage(ctx, 'SAMLRequest'));
    } catch (err) {
      if (!(err instanceof UpstreamRejected)) throw err;
      logger.info({ provider: provider.alias, reason: err.message }, 'SAML LogoutRequest refused');
      return refused();
    }

    let status: SamlLogoutStatus = 'success';
    if (request.refused) {
      logger.info({ provider: provider.alias, reason: request.refused }, 'SAML LogoutRequest from the IdP refused');
      status = 'requester';
    } else {
      try {
        const userId = await federation.accounts.signOut(provider, request.nameId, 'saml_slo', { actor: identityProviderActor(provider.alias), requestId: ctx.state.requestId as string });
        logger.info({ provider: provider.alias, user: userId ?? null }, 'SAML single logout');
      } catch (err) {
        // Sessions may be partly ended: the IdP hears that we failed, rather than a Success.
        logger.error({ err, provider: provider.alias }, 'SAML single logout failed');
        status = 'responder';
      }
    }

    const answer = await federation.saml.logoutResponseUrl(provider, request, status);
    if (!answer) {
      // The IdP's metadata names no SingleLogoutService to answer to: say it here.
      return status === 'success'
        ? renderPage(ctx, 'message', { title: 'logout.title', text: 'logout.done' })
        : refused();
    }
    ctx.redirect(answer.href);
  });

  /**
   * The browser back from the ACS, with its cookies: the result reaches the interaction only in the
   * browser that started the sign-in (federation-binding.ts), not in one an AuthnRequest URL was
   * forwarded to.
   */
  router.get('/:alias/continue', async (ctx) => {
    ctx.set('Cache-Control', 'no-store');
    const token = typeof ctx.query.t === 'string' ? ctx.query.t : '';
    const handoff = token ? await federation.records.takeHandoff(token) : undefined;
    if (!handoff) return expired(ctx);
    if (!deps.binding.holds(ctx, handoff.binding)) {
      logger.warn({ provider: ctx.params.alias }, 'SAML response in a browser that did not start the sign-in: refused');
      return expired(ctx);
    }
    await federation.records.saveResult(handoff.uid, handoff.result);
    ctx.status = 303;
    ctx.redirect(`/interaction/${encodeURIComponent(handoff.uid)}/federated`);
  });

  return router;
}
