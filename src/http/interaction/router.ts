import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import type { Limiter } from '../../infra/ephemeral/index.ts';
import type Provider from 'oidc-provider';
import type { Accounts, SignInFailure } from '../../domain/authn/accounts.ts';
import { negotiate, translate, type MessageKey } from '../../i18n/index.ts';
import type { RenderPage } from '../render.ts';
import type { Csrf } from './csrf.ts';
import type { AccountFlowDeps } from '../account-flows.ts';
import { DEFAULT_TENANT } from '../../domain/authn/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import { isDisplayName } from '../../domain/accounts/display-names.ts';
import type { UserRow } from '../../repos/users.ts';
import { captchaField, markRegistrantBrowser, registrantMarkers, registrationPolicyOf } from '../registration.ts';
import { field, isEmail, pageErrorOf } from '../pages/flow-messages.ts';
import { allowSources } from '../middleware/security-headers.ts';
import { clientLimitKey } from '../middleware/rate-limit.ts';
import { captchaCspSources } from '../../infra/captcha.ts';
import { createSignIn } from './sign-in.ts';

export interface InteractionDeps {
  provider: Provider;
  accounts: Accounts;
  csrf: Csrf;
  renderPage: RenderPage;
  loginLimiter: Limiter;
  /** Registration, verification and magic links inside a pending sign-in. */
  account: AccountFlowDeps;
  /** Limits the account steps' posts (registration, codes, links) per IP. */
  flowLimiter: Limiter;
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
  const { provider, accounts, csrf, renderPage, loginLimiter, account, flowLimiter } = deps;
  const router = new Router({ prefix: '/interaction/:uid' });
  const form = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });
  const signIn = createSignIn({ provider, accounts, registrationDefaults: account.registrationDefaults });

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

  const policyOf = (details: Details) =>
    registrationPolicyOf(provider, account.registrationDefaults, details.params.client_id as string);

  async function renderLogin(ctx: Context, details: Details, extra: { error?: MessageKey; email?: string } = {}, status = 200) {
    const policy = await policyOf(details);
    renderPage(
      ctx,
      'login',
      {
        title: 'login.title',
        locale: localeOf(ctx, details),
        clientName: await clientNameOf(details),
        action: `/interaction/${details.uid}/login`,
        abortAction: `/interaction/${details.uid}/abort`,
        magicAction: `/interaction/${details.uid}/magic-link`,
        forgotUrl: `/forgot-password?interaction=${encodeURIComponent(details.uid)}`,
        registerUrl: policy.enabled ? `/interaction/${details.uid}/register` : undefined,
        csrf: csrf.issue(details.uid),
        ...extra,
      },
      status,
    );
  }

  /** Counts a request from this IP; true when over the limit (the caller answers with its own page). */
  async function limited(ctx: Context, limiter: Limiter): Promise<boolean> {
    try {
      await limiter.consume(clientLimitKey(ctx));
      return false;
    } catch (rejection) {
      if (rejection instanceof Error) throw rejection;
      return true;
    }
  }

  /** The code form that completes this sign-in once the address is proven. */
  function renderVerify(ctx: Context, details: Details, email: string, extra: Record<string, unknown> = {}, status = 200) {
    renderPage(ctx, 'verify-email', {
      title: 'verify.title',
      locale: localeOf(ctx, details),
      email,
      action: `/interaction/${details.uid}/verify-email`,
      resendAction: `/interaction/${details.uid}/verify-email/resend`,
      csrf: csrf.issue(details.uid),
      ...extra,
    }, status);
  }

  async function renderRegister(ctx: Context, details: Details, extra: Record<string, unknown> = {}, status = 200) {
    const policy = await policyOf(details);
    // A third-party CAPTCHA widget needs its vendor's origins on this page, and only here.
    allowSources(ctx, captchaCspSources(account.captcha.widget));
    renderPage(ctx, 'register', {
      title: 'register.title',
      locale: localeOf(ctx, details),
      clientName: await clientNameOf(details),
      action: `/interaction/${details.uid}/register`,
      csrf: csrf.issue(details.uid),
      captcha: account.captcha.widget,
      passwordRequired: policy.password === 'required',
      signInUrl: `/interaction/${details.uid}`,
      ...extra,
    }, status);
  }

  const flowContext = (ctx: Context, details: Details) => ({
    actor: details.params.client_id as string,
    requestId: ctx.state.requestId as string,
  });

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

    if (await limited(ctx, loginLimiter)) return renderLogin(ctx, details, { error: FAILURE_MESSAGES.rate_limited, email }, 429);

    const outcome = await accounts.authenticate(email, password, undefined, flowContext(ctx, details));
    if (!outcome.ok) {
      const status = outcome.reason === 'locked' ? 429 : outcome.reason === 'inactive' ? 403 : 401;
      return renderLogin(ctx, details, { error: FAILURE_MESSAGES[outcome.reason], email }, status);
    }
    const user = outcome.user;
    await signIn.prove(ctx, details, user, 'password', {
      // Only someone who knows the password gets here, so asking them to verify reveals nothing.
      verifyAddress: async () => {
        // Whoever knows the password is the registrant's side: the code typed in this sign-in keeps it.
        await account.addressProof.bindRegistrant(user, [`interaction:${details.uid}`], 'password');
        try {
          await account.verification.send(user, localeOf(ctx, details));
        } catch (err) {
          // Within the cooldown the code sent moments ago still works.
          if (!(err instanceof AppError)) throw err;
        }
        renderVerify(ctx, details, user.email);
      },
    });
  });

  router.get('/register', async (ctx) => {
    const details = await load(ctx);
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    if (!(await policyOf(details)).enabled) {
      return renderPage(ctx, 'message', { title: 'register.title', text: 'register.disabled', link: { href: `/interaction/${details.uid}`, label: 'link.sign_in' } }, 403);
    }
    await renderRegister(ctx, details);
  });

  router.post('/register', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    const policy = await policyOf(details);
    if (!policy.enabled) ctx.throw(403, 'registration is disabled');
    const body = ctx.request.body;
    const input = { email: field(body, 'email', 254).trim(), givenName: field(body, 'given_name', 1024), familyName: field(body, 'family_name', 1024), password: field(body, 'password') };
    const echo = { email: input.email, givenName: input.givenName, familyName: input.familyName };
    if (await limited(ctx, flowLimiter)) return renderRegister(ctx, details, { ...echo, error: 'error.rate_limited' }, 429);
    if (!isEmail(input.email)) return renderRegister(ctx, details, { ...echo, error: 'error.invalid_email' }, 400);
    if (!isDisplayName(input.givenName) || !isDisplayName(input.familyName)) return renderRegister(ctx, details, { ...echo, error: 'error.invalid_name' }, 400);
    try {
      if (!(await account.captcha.verify(field(body, captchaField(account.captcha.provider), 8192), ctx.ip))) {
        return renderRegister(ctx, details, { ...echo, error: 'error.captcha' }, 400);
      }
      await account.registration.register(
        { ...input, password: input.password || undefined, givenName: input.givenName || undefined, familyName: input.familyName || undefined, locale: localeOf(ctx, details) },
        policy,
        flowContext(ctx, details),
        markRegistrantBrowser(ctx, details.uid),
      );
    } catch (err) {
      const e = pageErrorOf(err);
      return renderRegister(ctx, details, { ...echo, error: e.error, reasons: e.reasons }, e.status);
    }
    // A new account and a taken address look the same: the code form (even when verification is not
    // required: signing a new account in at once would tell it from a taken address).
    renderVerify(ctx, details, input.email);
  });

  router.post('/verify-email', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    const email = field(ctx.request.body, 'email', 254).trim();
    const code = field(ctx.request.body, 'code', 16).trim();
    if (await limited(ctx, flowLimiter)) return renderVerify(ctx, details, email, { error: 'error.rate_limited' }, 429);
    if (!isEmail(email) || !/^\d{6}$/.test(code)) return renderVerify(ctx, details, email, { error: 'error.otp_invalid' }, 400);
    let proof;
    try {
      // Only the account this sign-in registered (or proved the password of) is verified here.
      proof = await account.verification.verifyCode(DEFAULT_TENANT, email, code, [`interaction:${details.uid}`], flowContext(ctx, details), { onlyRegistrant: true });
    } catch (err) {
      const e = pageErrorOf(err);
      return renderVerify(ctx, details, email, { error: e.error }, e.status);
    }
    // The code proved the mailbox; an inactive account still cannot sign in.
    if (proof.user.status !== 'active') return renderLogin(ctx, details, { error: 'error.inactive', email }, 403);
    await signIn.prove(ctx, details, proof.user, 'email_code');
  });

  router.post('/verify-email/resend', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    const email = field(ctx.request.body, 'email', 254).trim();
    if (await limited(ctx, flowLimiter)) return renderVerify(ctx, details, email, { error: 'error.rate_limited' }, 429);
    if (isEmail(email)) account.verification.resend(DEFAULT_TENANT, email, localeOf(ctx, details));
    renderVerify(ctx, details, email, { notice: 'verify.resent' });
  });

  router.post('/magic-link', form, async (ctx) => {
    const details = await load(ctx);
    requireCsrf(ctx, details);
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    const email = field(ctx.request.body, 'email', 254).trim();
    if (await limited(ctx, flowLimiter)) return renderLogin(ctx, details, { error: 'error.rate_limited' }, 429);
    if (!isEmail(email)) return renderLogin(ctx, details, { error: 'error.invalid_email' }, 400);
    account.magicLinks.request(email, details.uid, localeOf(ctx, details));
    renderPage(ctx, 'message', { title: 'magic.sent_title', locale: localeOf(ctx, details), text: 'magic.sent', params: { email } });
  });

  // Opened from the mail: in the browser holding this interaction's cookie (load checks it).
  router.get('/magic-link', async (ctx) => {
    let details: Details;
    try {
      details = await load(ctx);
    } catch {
      return renderPage(ctx, 'message', { title: 'magic.sent_title', text: 'error.magic_link_browser' }, 400);
    }
    if (details.prompt.name !== 'login') ctx.throw(400, 'no sign-in is pending');
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    if (await limited(ctx, flowLimiter)) return renderLogin(ctx, details, { error: 'error.rate_limited' }, 429);
    let user: UserRow;
    try {
      user = (await account.magicLinks.complete(details.uid, token, registrantMarkers(ctx, details.uid), flowContext(ctx, details))).user;
    } catch (err) {
      pageErrorOf(err);
      return renderLogin(ctx, details, { error: 'error.magic_link_browser' }, 400);
    }
    await signIn.prove(ctx, details, user, 'magic_link');
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
    // The sign-in of this authorization came in the previous submission; without it in this
    // result a requested prompt=login counts as unanswered and the login page comes back forever.
    const login = details.lastSubmission?.login;
    await finish(ctx, { ...(login ? { login } : {}), consent: { grantId } });
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
