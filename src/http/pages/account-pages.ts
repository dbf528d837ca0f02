import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { AccountFlowDeps } from '../account-flows.ts';
import type Provider from 'oidc-provider';
import { DEFAULT_TENANT, type ChangeContext } from '../../domain/authn/accounts.ts';
import { flowTenant } from '../interaction/tenant.ts';
import { isDisplayName } from '../../domain/accounts/display-names.ts';
import type { ProofOutcome } from '../../domain/accounts/address-proof.ts';
import { negotiate, type MessageKey } from '../../i18n/index.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { FormCsrf } from '../interaction/csrf.ts';
import type { RenderPage } from '../render.ts';
import { clientLimitKey, rateLimit } from '../middleware/rate-limit.ts';
import { captchaField, captchaVerdict, markRegistrantBrowser, registrantMarkers } from '../registration.ts';
import { allowSources } from '../middleware/security-headers.ts';
import { captchaCspSources } from '../../infra/captcha.ts';
import { field, interactionOf, isEmail, pageErrorOf } from './flow-messages.ts';

export interface AccountPagesDeps {
  /** The pending sign-in a page names (`interaction`) decides the tenant of its account. */
  provider: Provider;
  account: AccountFlowDeps;
  ephemeral: EphemeralStore;
  csrf: FormCsrf;
  renderPage: RenderPage;
}

/**
 * The account pages outside a sign-in: /register, /verify-email, /forgot-password and
 * /reset-password. Mails link here; a pending sign-in (`interaction`) is carried along so the last
 * page can lead back to it. The pending sign-in decides the tenant whose account is meant; without
 * one (a page opened directly) it is the default tenant. Mailed links carry their account's tenant.
 */
export function accountPageRoutes(deps: AccountPagesDeps) {
  const { account, csrf, renderPage } = deps;
  const router = new Router();
  const form = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });
  const limit = rateLimit(deps.ephemeral.limiter('auth-pages-ip', account.authRateLimitPerIp, 60), clientLimitKey);
  const locale = (ctx: Context) => negotiate(ctx.query.ui_locales as string | undefined, ctx.state.uiLocale, ctx.get('accept-language'));
  // Anonymous pages (verification, password reset): the domain names the account's owner as the actor.
  const context = (ctx: Context): ChangeContext => ({ requestId: ctx.state.requestId as string });
  const checkCsrf: Middleware = async (ctx, next) => {
    if (!csrf.verify(ctx, (ctx.request.body as Record<string, unknown> | undefined)?.csrf)) ctx.throw(403, 'invalid CSRF token');
    await next();
  };
  const post = [limit, form, checkCsrf];

  const message = (ctx: Context, title: MessageKey, body: MessageKey, params: Record<string, string> = {}, link?: { href: string; label: MessageKey }) =>
    renderPage(ctx, 'message', { title, text: body, params, ...(link ? { link } : {}) });

  /** Where a finished flow sends the user: back to their sign-in, or to their account. */
  const nextLink = (interaction: string | undefined) =>
    interaction
      ? { href: `/interaction/${interaction}`, label: 'link.continue_sign_in' as const }
      : { href: '/account', label: 'link.account' as const };

  // Registration without a pending sign-in uses the tenant's policy.
  const renderRegister = (ctx: Context, extra: Record<string, unknown> = {}, status = 200) => {
    allowSources(ctx, captchaCspSources(account.captcha.widget));
    renderPage(ctx, 'register', {
      title: 'register.title',
      action: '/register',
      csrf: csrf.issue(ctx),
      captcha: account.captcha.widget,
      passwordRequired: account.registrationDefaults.password === 'required',
      passwordMinLength: account.registration.passwordMinLength,
      signInUrl: '/account',
      ...extra,
    }, status);
  };

  router.get('/register', async (ctx) => {
    if (!account.registrationDefaults.enabled) return message(ctx, 'register.title', 'register.disabled');
    renderRegister(ctx);
  });

  router.post('/register', ...post, async (ctx) => {
    const body = ctx.request.body;
    const input = { email: field(body, 'email', 254).trim(), givenName: field(body, 'given_name', 1024), familyName: field(body, 'family_name', 1024), password: field(body, 'password') };
    const echo = { email: input.email, givenName: input.givenName, familyName: input.familyName };
    if (!isEmail(input.email)) return renderRegister(ctx, { ...echo, error: 'error.invalid_email' }, 400);
    if (!isDisplayName(input.givenName) || !isDisplayName(input.familyName)) return renderRegister(ctx, { ...echo, error: 'error.invalid_name' }, 400);
    try {
      if (!(await account.captcha.verify(field(body, captchaField(account.captcha.provider), 8192), ctx.ip))) {
        return renderRegister(ctx, { ...echo, error: 'error.captcha' }, 400);
      }
      await account.registration.register(
        { ...input, password: input.password || undefined, givenName: input.givenName || undefined, familyName: input.familyName || undefined, locale: locale(ctx) },
        account.registrationDefaults,
        context(ctx),
        markRegistrantBrowser(ctx),
      );
    } catch (err) {
      const e = pageErrorOf(err);
      return renderRegister(ctx, { ...echo, error: e.error, reasons: e.reasons }, e.status);
    }
    // New or taken address: the same page (the code form), so the answer reveals nothing.
    renderVerify(ctx, input.email);
  });

  function renderVerify(ctx: Context, email: string, extra: Record<string, unknown> = {}, status = 200) {
    renderPage(ctx, 'verify-email', {
      title: 'verify.title',
      email,
      action: '/verify-email',
      resendAction: '/verify-email/resend',
      csrf: csrf.issue(ctx),
      ...extra,
    }, status);
  }

  /** A used link opened again (or after the code was typed): not an error, the work is done. */
  const alreadyVerified = (ctx: Context) => message(ctx, 'verify.done_title', 'verify.already_done', {}, { href: '/account', label: 'link.sign_in' });

  // Opening the link only asks: mail scanners fetch links, so the GET changes nothing and the
  // page's button posts the token.
  router.get('/verify-email', limit, async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    if (!token) return renderVerify(ctx, typeof ctx.query.email === 'string' && isEmail(ctx.query.email) ? ctx.query.email : '');
    const state = await account.verification.linkState(token);
    if (state === 'verified') return alreadyVerified(ctx);
    if (state === 'invalid') return renderPage(ctx, 'message', { title: 'verify.title', text: 'error.otp_invalid' }, 400);
    renderPage(ctx, 'verify-link', { title: 'verify.title', action: '/verify-email', csrf: csrf.issue(ctx), token });
  });

  /** After a proof: done, or (the registrant's password discarded) the form to choose one. */
  const proven = (ctx: Context, proof: ProofOutcome) =>
    proof.passwordSession
      ? renderReset(ctx, { session: proof.passwordSession, notice: 'verify.password_discarded' })
      : message(ctx, 'verify.done_title', 'verify.done', {}, nextLink(undefined));

  router.post('/verify-email', ...post, async (ctx) => {
    const token = field(ctx.request.body, 'token', 256);
    if (token) {
      try {
        return proven(ctx, await account.verification.verifyLink(token, registrantMarkers(ctx), context(ctx)));
      } catch (err) {
        // A double click on the button: the first post verified the address.
        if ((await account.verification.linkState(token)) === 'verified') return alreadyVerified(ctx);
        const e = pageErrorOf(err);
        return renderPage(ctx, 'message', { title: 'verify.title', text: e.error }, e.status);
      }
    }
    const email = field(ctx.request.body, 'email', 254).trim();
    const code = field(ctx.request.body, 'code', 16).trim();
    if (!isEmail(email) || !/^\d{6}$/.test(code)) return renderVerify(ctx, email, { error: 'error.otp_invalid' }, 400);
    let proof: ProofOutcome;
    try {
      proof = await account.verification.verifyCode(DEFAULT_TENANT, email, code, registrantMarkers(ctx), context(ctx));
    } catch (err) {
      const e = pageErrorOf(err);
      return renderVerify(ctx, email, { error: e.error }, e.status);
    }
    proven(ctx, proof);
  });

  router.post('/verify-email/resend', ...post, async (ctx) => {
    const email = field(ctx.request.body, 'email', 254).trim();
    if (isEmail(email)) account.verification.resend(DEFAULT_TENANT, email, locale(ctx), context(ctx));
    renderVerify(ctx, email, { notice: 'verify.resent' });
  });

  const renderForgot = (ctx: Context, extra: Record<string, unknown> = {}, status = 200) =>
    renderPage(ctx, 'forgot-password', { title: 'forgot.title', action: '/forgot-password', csrf: csrf.issue(ctx), ...extra }, status);
  const renderReset = (ctx: Context, extra: Record<string, unknown>, status = 200) =>
    renderPage(ctx, 'reset-password', { title: 'reset.title', action: '/reset-password', csrf: csrf.issue(ctx), ...extra }, status);

  router.get('/forgot-password', async (ctx) => {
    renderForgot(ctx, { interaction: interactionOf(ctx.query.interaction) });
  });

  router.post('/forgot-password', limit, form, checkCsrf, async (ctx) => {
    const email = field(ctx.request.body, 'email', 254).trim();
    const interaction = interactionOf((ctx.request.body as Record<string, unknown>).interaction);
    if (!isEmail(email)) return renderForgot(ctx, { email, interaction, error: 'error.invalid_email' }, 400);
    try {
      const human = await captchaVerdict(account.captcha, field(ctx.request.body, captchaField(account.captcha.provider), 8192) || undefined, ctx.ip);
      const tenantId = await flowTenant(deps.provider, { interaction });
      await account.passwordReset.request(email, { ip: clientLimitKey(ctx), locale: locale(ctx), human, tenantId }, context(ctx));
    } catch (err) {
      const e = pageErrorOf(err);
      // Past the address's budget (anyone can use it up) the form asks for the CAPTCHA.
      const withCaptcha = e.error === 'error.captcha_required' || e.error === 'error.captcha';
      if (withCaptcha) allowSources(ctx, captchaCspSources(account.captcha.widget));
      return renderForgot(ctx, { email, interaction, error: e.error, ...(withCaptcha ? { captcha: account.captcha.widget } : {}) }, e.status);
    }
    renderReset(ctx, { email, interaction });
  });

  router.get('/reset-password', limit, async (ctx) => {
    const token = typeof ctx.query.token === 'string' ? ctx.query.token : '';
    // Opening the link only checks it: mail scanners fetch links, and a GET that used the token up
    // would leave the user a dead link. The form carries the token; posting it uses it.
    if (!(await account.passwordReset.linkIsValid(token))) {
      return renderPage(ctx, 'message', { title: 'reset.title', text: 'error.otp_invalid', link: { href: '/forgot-password', label: 'forgot.title' } }, 400);
    }
    renderReset(ctx, { token });
  });

  router.post('/reset-password', ...post, async (ctx) => {
    const body = ctx.request.body;
    const interaction = interactionOf((body as Record<string, unknown>).interaction);
    const token = field(body, 'token', 256);
    if (token) {
      try {
        await account.passwordReset.confirm({ token }, field(body, 'password'), context(ctx));
      } catch (err) {
        const e = pageErrorOf(err);
        // The rules are checked before the link is used, so a refused password can be replaced.
        if (e.error === 'error.password_policy') return renderReset(ctx, { token, interaction, error: e.error, reasons: e.reasons }, e.status);
        return renderPage(ctx, 'message', { title: 'reset.title', text: e.error, link: { href: '/forgot-password', label: 'forgot.title' } }, e.status);
      }
      return message(ctx, 'reset.done_title', 'reset.done', {}, nextLink(interaction));
    }
    const session = field(body, 'session', 256);
    if (session) {
      try {
        await account.passwordReset.complete(session, field(body, 'password'), context(ctx));
      } catch (err) {
        const e = pageErrorOf(err);
        // A refused password keeps the step open: the same form again.
        if (e.error === 'error.password_policy' && (await account.passwordReset.isOpen(session))) {
          return renderReset(ctx, { session, interaction, error: e.error, reasons: e.reasons }, e.status);
        }
        return renderPage(ctx, 'message', { title: 'reset.title', text: e.error, link: { href: '/forgot-password', label: 'forgot.title' } }, e.status);
      }
      return message(ctx, 'reset.done_title', 'reset.done', {}, nextLink(interaction));
    }
    const email = field(body, 'email', 254).trim();
    const code = field(body, 'code', 16).trim();
    if (!isEmail(email) || !/^\d{6}$/.test(code)) return renderReset(ctx, { email, interaction, error: 'error.otp_invalid' }, 400);
    try {
      const verified = await account.passwordReset.verifyCode(email, code, await flowTenant(deps.provider, { interaction }));
      renderReset(ctx, { session: verified, interaction });
    } catch (err) {
      const e = pageErrorOf(err);
      renderReset(ctx, { email, interaction, error: e.error }, e.status);
    }
  });

  return router;
}
