import type { Context } from 'koa';
import type { FederatedVia } from '../../domain/authn/sign-in-flow.ts';
import { AppError } from '../../domain/errors.ts';
import { randomToken } from '../../infra/crypto.ts';
import type { FederationRefusal } from '../../domain/federation/federated-accounts.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import type { IdentityProvider } from '../../domain/federation/identity-providers.ts';
import type { UpstreamIdentity } from '../../domain/federation/upstream-oauth.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { UserRow } from '../../repos/users.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';
import { tenantOf } from './tenant.ts';

/** The federated factor's provenance: the upstream's methods count only from a provider trusted for MFA. */
const viaOf = (provider: IdentityProvider, identity: UpstreamIdentity): FederatedVia =>
  ({ provider: provider.alias, ...(provider.trustUpstreamMfa && identity.amr.length ? { upstreamAmr: identity.amr } : {}) });

const REFUSALS: Record<FederationRefusal, { error: MessageKey; status: number }> = {
  'unverified-email': { error: 'federation.unverified_email', status: 409 },
  'domain-not-allowed': { error: 'federation.domain_not_allowed', status: 403 },
  'linking-off': { error: 'federation.linking_off', status: 409 },
  'no-account': { error: 'federation.no_account', status: 403 },
  inactive: { error: 'error.inactive', status: 403 },
};

/**
 * Signing in through an upstream provider, inside a pending sign-in: the login page's "Continue
 * with …" (and home-realm discovery) start it here; the callback (federation-callback.ts) records
 * what the upstream said and sends the browser back to `finish`, which the flow module completes
 * like any way in (factor `federated`). An upstream identity whose email has an account here is
 * linked only once this person proves control of that account: its password or a code mailed to it.
 */
export function federationStep(shared: Shared, signIn: SignIn, deps: InteractionDeps & { federation: Federation }) {
  const { federation, accounts, account, loginLimiter, csrf, renderPage } = deps;
  const { renderLogin, localeOf, limited } = shared;

  /**
   * SAML: an AuthnRequest to the IdP by HTTP-Redirect, its RelayState naming the one-time record of
   * this interaction and the request's ID (the response must answer that ID).
   */
  async function startSaml(ctx: Context, details: Details, provider: IdentityProvider & { type: 'saml' }): Promise<void> {
    const state = randomToken();
    // Nothing is fetched: the metadata was read at registration, so a failure here is ours (a 500).
    const request = await federation.saml.loginRequest(provider, state);
    await federation.records.saveRequest({
      uid: details.uid, providerId: provider.id, checks: { state, requestId: request.requestId }, binding: deps.federationBinding.bind(ctx),
    });
    ctx.status = 303;
    ctx.redirect(request.url.href);
  }

  /** Sends the browser to the provider's authorization endpoint (SAML: its sign-on service). */
  async function start(ctx: Context, details: Details, provider: IdentityProvider): Promise<void> {
    if (provider.type === 'saml') return startSaml(ctx, details, provider);
    const checks = federation.upstream.newChecks(provider);
    let url: URL;
    try {
      url = await federation.upstream.authorizationUrl(provider, checks);
    } catch (err) {
      if (err instanceof AppError && err.code === 'IDENT_FEDERATION_UNAVAILABLE') return renderLogin(ctx, details, { error: 'federation.unavailable' }, 503);
      return renderLogin(ctx, details, { error: 'federation.rejected' }, 502);
    }
    await federation.records.saveRequest({ uid: details.uid, providerId: provider.id, checks, binding: deps.federationBinding.bind(ctx) });
    ctx.status = 303;
    ctx.redirect(url.href);
  }

  /** The result of this interaction's federation, with its provider still enabled; undefined sends the browser back to the start. */
  async function pending(details: Details) {
    const result = await federation.records.peekResult(details.uid);
    if (!result) return undefined;
    const provider = (await federation.identityProviders.enabled(tenantOf(details))).find((p) => p.id === result.providerId);
    return provider ? { result, provider } : undefined;
  }

  function renderLink(ctx: Context, details: Details, provider: IdentityProvider, user: UserRow, extra: { error?: MessageKey; codeSent?: boolean } = {}, status = 200) {
    renderPage(ctx, 'federation-link', {
      title: 'federation.link_title',
      locale: localeOf(ctx, details),
      provider: provider.displayName,
      email: user.email,
      action: `/interaction/${details.uid}/federated/link`,
      abortAction: `/interaction/${details.uid}/abort`,
      csrf: csrf.issue(details.uid),
      ...extra,
    }, status);
  }

  /** The link is proven: link, then sign in with both proofs. */
  async function linkAndContinue(ctx: Context, details: Details, provider: IdentityProvider, identity: UpstreamIdentity, user: UserRow, proof: 'password' | 'email_code') {
    await federation.accounts.link(user, provider, identity, flowContext(ctx, details));
    await federation.records.dropResult(details.uid);
    await signIn.prove(ctx, details, user, [proof, 'federated'], {}, viaOf(provider, identity));
  }

  return {
    /** POST /federate/:alias, a "Continue with …" control of the login page. */
    async begin(ctx: Context) {
      const details = detailsOf(ctx);
      const provider = await federation.identityProviders.enabledByAlias(ctx.params.alias!, tenantOf(details));
      if (!provider) return renderLogin(ctx, details, { error: 'federation.unknown_provider' }, 404);
      if (await limited(ctx, loginLimiter)) return renderLogin(ctx, details, { error: 'error.rate_limited' }, 429);
      await start(ctx, details, provider);
    },

    /** Home-realm discovery: the provider that serves this email's domain, if one does. */
    async providerForEmail(email: string, tenantId: string): Promise<IdentityProvider | undefined> {
      const domain = email.trim().slice(email.trim().lastIndexOf('@') + 1).toLowerCase();
      if (!domain) return undefined;
      return (await federation.identityProviders.enabled(tenantId)).find((p) => p.allowedDomains.includes(domain));
    },

    start,

    /** GET /federated: back from the provider (through the callback), the sign-in goes on. */
    async finish(ctx: Context) {
      const details = detailsOf(ctx);
      const found = await pending(details);
      if (!found) return renderLogin(ctx, details, { error: 'federation.expired' }, 400);
      const { result, provider } = found;
      if ('error' in result) {
        await federation.records.dropResult(details.uid);
        return renderLogin(ctx, details, { error: result.error === 'unavailable' ? 'federation.unavailable' : 'federation.rejected' }, result.error === 'unavailable' ? 503 : 400);
      }
      const outcome = await federation.accounts.resolve(provider, result.identity, flowContext(ctx, details));
      if (outcome.kind === 'refused') {
        await federation.records.dropResult(details.uid);
        const { error, status } = REFUSALS[outcome.why];
        return renderLogin(ctx, details, { error }, status);
      }
      if (outcome.kind === 'link-required') return renderLink(ctx, details, provider, outcome.user);
      await federation.records.dropResult(details.uid);
      await signIn.prove(ctx, details, outcome.user, 'federated', {}, viaOf(provider, result.identity));
    },

    /** POST /federated/link: proving control of the existing account, by its password or a mailed code. */
    async link(ctx: Context) {
      const details = detailsOf(ctx);
      const found = await pending(details);
      if (!found || 'error' in found.result) return renderLogin(ctx, details, { error: 'federation.expired' }, 400);
      const { provider, result: { identity } } = found;
      // The account is the one the upstream email names now (not a value from the form).
      const outcome = await federation.accounts.resolve(provider, identity, flowContext(ctx, details));
      if (outcome.kind !== 'link-required') return renderLogin(ctx, details, { error: 'federation.expired' }, 400);
      const user = outcome.user;
      const body = ctx.request.body as Record<string, unknown>;
      const context = flowContext(ctx, details);
      if (await limited(ctx, loginLimiter)) return renderLink(ctx, details, provider, user, { error: 'error.rate_limited' }, 429);

      if (body.method === 'password') {
        const password = typeof body.password === 'string' ? body.password : '';
        const checked = password ? await accounts.authenticate(user.email, password, user.tenant_id, context) : undefined;
        if (!checked?.ok || checked.user.id !== user.id) {
          const locked = checked && !checked.ok && checked.reason === 'locked';
          return renderLink(ctx, details, provider, user, { error: locked ? 'error.locked' : 'error.invalid_credentials' }, locked ? 429 : 401);
        }
        return linkAndContinue(ctx, details, provider, identity, checked.user, 'password');
      }
      if (body.method === 'send-code') {
        try {
          await account.verification.send(user, localeOf(ctx, details));
        } catch (err) {
          // Within the cooldown the code sent moments ago still works.
          if (!(err instanceof AppError)) throw err;
        }
        return renderLink(ctx, details, provider, user, { codeSent: true });
      }
      if (body.method === 'code') {
        const code = typeof body.code === 'string' ? body.code.trim() : '';
        try {
          // The mailed code proves the address; the pre-hijacking rule applies (address-proof.ts).
          const proof = await account.verification.verifyCode(user.tenant_id, user.email, code, [`interaction:${details.uid}`], context);
          return await linkAndContinue(ctx, details, provider, identity, proof.user, 'email_code');
        } catch (err) {
          if (!(err instanceof AppError) || !err.code.startsWith('IDENT_OTP')) throw err;
          return renderLink(ctx, details, provider, user, { codeSent: true, error: err.code === 'IDENT_OTP_LOCKED' ? 'error.otp_locked' : 'error.otp_invalid' }, 400);
        }
      }
      return renderLink(ctx, details, provider, user, { error: 'error.missing_fields' }, 400);
    },
  };
}
