import type { Context } from 'koa';
import { isDisplayName } from '../../domain/accounts/display-names.ts';
import { captchaCspSources } from '../../infra/captcha.ts';
import { allowSources } from '../middleware/security-headers.ts';
import { field, isEmail, pageErrorOf } from '../pages/flow-messages.ts';
import { captchaField, markRegistrantBrowser } from '../registration.ts';
import { detailsOf, flowContext, type Details, type InteractionDeps, type Shared } from './shared.ts';
import { tenantOf } from './tenant.ts';

/** Registration inside a pending sign-in (GET and POST /register). It proves no factor; the code form that follows does. */
export function registerStep(shared: Shared, deps: InteractionDeps) {
  const { csrf, renderPage, account, flowLimiter } = deps;
  const { policyOf, localeOf, clientNameOf, limited, renderVerify } = shared;

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
      passwordMinLength: account.registration.passwordMinLength,
      signInUrl: `/interaction/${details.uid}`,
      ...extra,
    }, status);
  }

  return {
    async show(ctx: Context) {
      const details = detailsOf(ctx);
      if (!(await policyOf(details)).enabled) {
        return renderPage(ctx, 'message', { title: 'register.title', text: 'register.disabled', link: { href: `/interaction/${details.uid}`, label: 'link.sign_in' } }, 403);
      }
      await renderRegister(ctx, details);
    },

    async submit(ctx: Context) {
      const details = detailsOf(ctx);
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
          { ...input, password: input.password || undefined, givenName: input.givenName || undefined, familyName: input.familyName || undefined, locale: localeOf(ctx, details), tenantId: tenantOf(details) },
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
    },
  };
}
