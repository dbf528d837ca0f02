import type Provider from 'oidc-provider';
import { AppError } from '../domain/errors.ts';
import { registrationPolicyFor, type RegistrationPolicy } from '../domain/registration-policy.ts';

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
