import type { RequestStep } from './request-steps.ts';
import { supportedLocale } from '../../i18n/index.ts';
import { ownCookieName } from '../cookies.ts';

/**
 * Keeps the language a relying party asked for (ui_locales) for the rest of the browser session:
 * the login page's "Forgot password?", the mails it sends and the account console stay in it,
 * though their URLs no longer carry ui_locales. A later ui_locales replaces it; without any the
 * browser's Accept-Language decides; a language the person picks (their profile) beats both.
 * Pages read it as ctx.state.uiLocale.
 */
export function uiLocale(issuer: string): RequestStep {
  const name = ownCookieName(issuer, 'idp_lang');
  return (ctx) => {
    // Neither a query nor a cookie (a relying party's back-channel call): nothing to read or keep.
    if (!ctx.querystring && !ctx.headers.cookie) {
      ctx.state.uiLocale = undefined;
      return;
    }
    const remembered = ctx.cookies.get(name);
    const asked = supportedLocale(ctx.query.ui_locales);
    // A session cookie: the choice of this visit, not a setting of the device.
    if (asked && asked !== remembered) ctx.cookies.set(name, asked, { httpOnly: true, sameSite: 'lax', secure: ctx.secure, path: '/', signed: false });
    ctx.state.uiLocale = asked ?? supportedLocale(remembered);
  };
}
