import type { Middleware } from 'koa';
import { LOCALES, negotiate, type Locale } from '../../i18n/index.ts';
import { ownCookieName } from '../cookies.ts';

/**
 * Keeps the language a relying party asked for (ui_locales) for the rest of the browser session:
 * the login page's "Forgot password?", the mails it sends and the account console stay in it,
 * though their URLs no longer carry ui_locales. A later ui_locales replaces it; without any the
 * browser's Accept-Language decides; a language the person picks (their profile) beats both.
 * Pages read it as ctx.state.uiLocale.
 */
export function uiLocale(issuer: string): Middleware {
  const name = ownCookieName(issuer, 'idp_lang');
  return async (ctx, next) => {
    const asked = ctx.query.ui_locales;
    const remembered = ctx.cookies.get(name);
    // negotiate() answers 'en' when nothing matches: only a tag we support counts as asked.
    const supported = typeof asked === 'string' && asked.split(/\s+/).some((tag) => (LOCALES as readonly string[]).includes(tag.toLowerCase().split('-')[0]!));
    let locale: Locale | undefined = (LOCALES as readonly string[]).includes(remembered ?? '') ? (remembered as Locale) : undefined;
    if (supported) {
      locale = negotiate(asked);
      // A session cookie: the choice of this visit, not a setting of the device.
      if (locale !== remembered) ctx.cookies.set(name, locale, { httpOnly: true, sameSite: 'lax', secure: ctx.secure, path: '/', signed: false });
    }
    ctx.state.uiLocale = locale;
    await next();
  };
}
