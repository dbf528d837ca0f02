import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import { randomToken } from '../infra/crypto.ts';
import { BINDING_TTL_SECONDS } from '../domain/accounts/address-proof.ts';
import type { Captcha } from '../infra/captcha.ts';
import { AppError } from '../domain/errors.ts';
import { registrationPolicyFor, type RegistrationPolicy } from '../domain/accounts/registration-policy.ts';

// What the registration page, the interaction pages and the API share.

/** The registration policy of a client (its metadata over the tenant's), or the tenant's alone. */
export async function registrationPolicyOf(provider: Provider, defaults: RegistrationPolicy, clientId: string | undefined) {
  if (!clientId) return defaults;
  const client = await provider.Client.find(clientId).catch(() => undefined);
  if (!client) throw new AppError('IDENT_VALIDATION', 'unknown client_id');
  return registrationPolicyFor(defaults, client.metadata() as Record<string, unknown>);
}

/** The captcha field each provider's widget posts. */
export function captchaField(provider: string): string {
  return provider === 'turnstile' ? 'cf-turnstile-response' : provider === 'hcaptcha' ? 'h-captcha-response' : 'captcha';
}

const COOKIE_VALUE = /^[\w-]{43}$/;
/**
 * `__Host-` over https (an https issuer makes every request secure, see oidc/transport.ts), so a
 * sibling subdomain or a plain-http page cannot plant a registrant marker; bare over plain http.
 */
const registrantCookie = (ctx: Context) => (ctx.secure ? '__Host-idp_registrant' : 'idp_registrant');

/**
 * The markers (domain/accounts/address-proof.ts) this request holds: the interaction it runs in, when the
 * caller has checked the interaction cookie, and the browser's registrant cookie, when it has one.
 */
export function registrantMarkers(ctx: Context, interactionUid?: string): string[] {
  const value = ctx.cookies.get(registrantCookie(ctx));
  return [
    ...(interactionUid ? [`interaction:${interactionUid}`] : []),
    ...(value && COOKIE_VALUE.test(value) ? [`browser:${value}`] : []),
  ];
}

/** Marks the browser that registers (a random HttpOnly cookie) and answers the request's markers. */
export function markRegistrantBrowser(ctx: Context, interactionUid?: string): string[] {
  let value = ctx.cookies.get(registrantCookie(ctx));
  if (!value || !COOKIE_VALUE.test(value)) {
    value = randomToken(32);
    ctx.cookies.set(registrantCookie(ctx), value, {
      httpOnly: true, sameSite: 'strict', secure: ctx.secure, path: '/', signed: false, maxAge: BINDING_TTL_SECONDS * 1000,
    });
  }
  return [...(interactionUid ? [`interaction:${interactionUid}`] : []), `browser:${value}`];
}

/**
 * Whether a request passed the CAPTCHA, for limits that let a solved CAPTCHA past them: undefined
 * without a CAPTCHA provider, false without a payload; a wrong payload is refused.
 */
export async function captchaVerdict(captcha: Captcha, payload: string | undefined, ip: string): Promise<boolean | undefined> {
  if (captcha.provider === 'none') return undefined;
  if (!payload) return false;
  if (!(await captcha.verify(payload, ip))) throw new AppError('IDENT_CAPTCHA_INVALID');
  return true;
}
