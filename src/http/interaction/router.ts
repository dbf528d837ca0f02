import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type Provider from 'oidc-provider';
import type { Accounts, SignInFailure } from '../../domain/accounts.ts';
import { negotiate, translate, type MessageKey } from '../../i18n/index.ts';
import type { RenderPage } from '../render.ts';
import type { Csrf } from './csrf.ts';

export interface InteractionDeps {
  provider: Provider;
  accounts: Accounts;
  csrf: Csrf;
  renderPage: RenderPage;
  loginLimiter: RateLimiterAbstract;
}

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;

const FAILURE_MESSAGES: Record<SignInFailure | 'rate_limited', MessageKey> = {
  invalid_credentials: 'error.invalid_credentials',
  locked: 'error.locked',
  inactive: 'error.inactive',
  rate_limited: 'error.rate_limited',
};

const STANDARD_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access']);

/**
 * The sign-in and consent pages under /interaction/:uid. They talk to the provider only through
 * interactionDetails/interactionResult and the Grant model.
 */
export function interactionRoutes(deps: InteractionDeps) {
  const { provider, accounts, csrf, renderPage, loginLimiter } = deps;
  const router = new Router({ prefix: '/interaction/:uid' });
  const form = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });

  async function load(ctx: Context): Promise<Details> {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    // The uid in the path must be the one the browser's interaction cookie is bound to.
    if (details.uid !== ctx.params.uid) ctx.throw(400, 'interaction mismatch');
    ctx.set('Cache-Control', 'no-store');
    return details;
  }

  const localeOf = (ctx: Context, details: Details) =>
    negotiate(details.params.ui_locales as string | undefined, ctx.get('accept-language'));

  async function clientNameOf(details: Details): Promise<string> {
    const client = await provider.Client.find(details.params.client_id as string);
    return client?.clientName ?? (details.params.client_id as string);
  }

  async function renderLogin(ctx: Context, details: Details, extra: { error?: MessageKey; email?: string } = {}, status = 200) {
    renderPage(
      ctx,
      'login',
      {
        title: 'login.title',
        locale: localeOf(ctx, details),
        clientName: await clientNameOf(details),
        action: `/interaction/${details.uid}/login`,
        abortAction: `/interaction/${details.uid}/abort`,
        csrf: csrf.issue(details.uid),
        ...extra,
      },
      status,
    );
  }

  async function finish(ctx: Context, result: Parameters<Provider['interactionResult']>[2]) {
    const redirectTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.redirect(redirectTo);
  }

  function requireCsrf(ctx: Context, details: Details) {
    if (!csrf.verify(details.uid, (ctx.request.body as Record<string, unknown> | undefined)?.csrf)) {
      ctx.throw(403, 'invalid CSRF token');
    }
  }

  router.get('/', async (ctx) => {
    const details = await load(ctx);
    if (details.prompt.name === 'login') return renderLogin(ctx, details);
    if (details.prompt.name === 'consent') {
      // First-party clients are trusted by the operator: even an explicit prompt=consent (needed
      // for offline_access) is answered without a screen.
      const client = await provider.Client.find(details.params.client_id as string);
      if (client?.first_party === true) return grantConsent(ctx, details);
      const session = details.session;
      const user = session ? await accounts.findActive(session.accountId) : undefined;
      const missingOIDC = (details.prompt.details.missingOIDCScope as string[] | undefined) ?? [];
      const locale = localeOf(ctx, details);
      return renderPage(ctx, 'consent', {
        title: 'consent.title',
        locale,
        clientName: await clientNameOf(details),
        email: user?.email ?? '',
        scopes: missingOIDC.map((scope) => ({
          label: STANDARD_SCOPES.has(scope)
            ? translate(locale, `consent.scope.${scope}` as MessageKey)
            : translate(locale, 'consent.scope.other', { scope }),
        })),
        resources: Object.entries(
          (details.prompt.details.missingResourceScopes as Record<string, string[]> | undefined) ?? {},
        ).map(([identifier, scopes]) => ({ identifier, scopes })),
        action: `/interaction/${details.uid}/confirm`,
        abortAction: `/interaction/${details.uid}/abort`,
        csrf: csrf.issue(details.uid),
      });
    }
    ctx.throw(400, `unsupported prompt ${details.prompt.name}`);
  });

  router.post('/login', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    const body = ctx.request.body as Record<string, unknown>;
    const email = typeof body.email === 'string' ? body.email : '';
    const password = typeof body.password === 'string' ? body.password : '';
    if (!email || !password) return renderLogin(ctx, details, { error: 'error.missing_fields', email }, 400);

    try {
      await loginLimiter.consume(ctx.ip);
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      return renderLogin(ctx, details, { error: FAILURE_MESSAGES.rate_limited, email }, 429);
    }

    const outcome = await accounts.authenticate(email, password, undefined, {
      actor: details.params.client_id as string,
      requestId: ctx.state.requestId as string,
    });
    if (!outcome.ok) {
      const status = outcome.reason === 'locked' ? 429 : outcome.reason === 'inactive' ? 403 : 401;
      return renderLogin(ctx, details, { error: FAILURE_MESSAGES[outcome.reason], email }, status);
    }
    await finish(ctx, { login: { accountId: outcome.user.id, amr: ['pwd'] } });
  });

  /** Grants what the consent prompt asks for and resumes the authorization. */
  async function grantConsent(ctx: Context, details: Details) {
    if (details.prompt.name !== 'consent' || !details.session) ctx.throw(400, 'no consent is pending');
    const { accountId } = details.session!;
    const clientId = details.params.client_id as string;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId });
    if (!grant) ctx.throw(400, 'grant expired');
    const promptDetails = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (promptDetails.missingOIDCScope) grant!.addOIDCScope(promptDetails.missingOIDCScope.join(' '));
    if (promptDetails.missingOIDCClaims) grant!.addOIDCClaims(promptDetails.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(promptDetails.missingResourceScopes ?? {})) {
      grant!.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant!.save();
    await finish(ctx, { consent: { grantId } });
  }

  router.post('/confirm', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    await grantConsent(ctx, details);
  });

  router.post('/abort', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    await finish(ctx, { error: 'access_denied', error_description: 'End-User aborted interaction' });
  });

  return router;
}
