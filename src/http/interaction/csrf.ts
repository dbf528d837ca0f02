import { constantTimeEqual, randomToken, type SecretBox } from '../../infra/crypto.ts';

/**
 * CSRF tokens for interaction forms: an HMAC of the interaction uid. The uid itself is bound to
 * the browser by the provider's signed, SameSite interaction cookie, so a form can be posted
 * only by the page that rendered it.
 */
export function createCsrf(box: SecretBox) {
  return {
    issue(uid: string): string {
      return box.mac('csrf:interaction', uid).toString('base64url');
    },
    verify(uid: string, token: unknown): boolean {
      return typeof token === 'string' && constantTimeEqual(box.mac('csrf:interaction', uid).toString('base64url'), token);
    },
  };
}

export type Csrf = ReturnType<typeof createCsrf>;

import { ownCookieName } from '../cookies.ts';

/**
 * CSRF tokens for the pages outside an interaction (register, verify email, reset password):
 * a random value in an HttpOnly SameSite=Strict cookie, and in the form its HMAC. A cross-site
 * post carries neither the cookie nor a token that matches it.
 */
export function createFormCsrf(box: SecretBox, issuer: string) {
  const FORM_COOKIE = ownCookieName(issuer, 'idp_csrf');
  const tokenFor = (value: string) => box.mac('csrf:form', value).toString('base64url');
  return {
    issue(ctx: import('koa').Context): string {
      let value = ctx.cookies.get(FORM_COOKIE);
      if (!value || !/^[\w-]{43}$/.test(value)) {
        value = randomToken(32);
        ctx.cookies.set(FORM_COOKIE, value, { httpOnly: true, sameSite: 'strict', secure: ctx.secure, path: '/', signed: false });
      }
      return tokenFor(value);
    },
    verify(ctx: import('koa').Context, token: unknown): boolean {
      const value = ctx.cookies.get(FORM_COOKIE);
      return typeof token === 'string' && typeof value === 'string' && constantTimeEqual(tokenFor(value), token);
    },
  };
}

export type FormCsrf = ReturnType<typeof createFormCsrf>;
