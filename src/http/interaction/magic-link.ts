import type { Context } from 'koa';
import type { UserRow } from '../../repos/users.ts';
import { field, isEmail, pageErrorOf } from '../pages/flow-messages.ts';
import { registrantMarkers } from '../registration.ts';
import { detailsOf, flowContext, type InteractionDeps, type Shared } from './shared.ts';
import type { SignIn } from './sign-in.ts';
import { tenantOf } from './tenant.ts';

/** "Email me a sign-in link": POST /magic-link sends it, GET /magic-link (the factor `magic_link`) opens it. */
export function magicLinkStep(shared: Shared, signIn: SignIn, deps: InteractionDeps) {
  const { renderPage, account, flowLimiter } = deps;
  const { renderLogin, localeOf, limited } = shared;

  return {
    async send(ctx: Context) {
      const details = detailsOf(ctx);
      const email = field(ctx.request.body, 'email', 254).trim();
      if (await limited(ctx, flowLimiter)) return renderLogin(ctx, details, { error: 'error.rate_limited' }, 429);
      if (!isEmail(email)) return renderLogin(ctx, details, { error: 'error.invalid_email' }, 400);
      account.magicLinks.request(email, details.uid, localeOf(ctx, details), tenantOf(details));
      renderPage(ctx, 'message', { title: 'magic.sent_title', locale: localeOf(ctx, details), text: 'magic.sent', params: { email } });
    },

    /** Opened without this interaction's cookie: the link works only in the browser that asked for it. */
    otherBrowser(ctx: Context) {
      renderPage(ctx, 'message', { title: 'magic.sent_title', text: 'error.magic_link_browser' }, 400);
    },

    // Opened from the mail: in the browser holding this interaction's cookie (the interaction middleware checks it).
    async open(ctx: Context) {
      const details = detailsOf(ctx);
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
    },
  };
}
