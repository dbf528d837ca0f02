import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { z } from 'zod';
import type Provider from 'oidc-provider';
import type { AccountFlowDeps } from '../account-flows.ts';
import { clientLimitKey, rateLimit } from '../middleware/rate-limit.ts';
import { captchaVerdict, markRegistrantBrowser, registrantMarkers, registrationPolicyOf } from '../registration.ts';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import { DEFAULT_TENANT_ID } from '../../domain/tenants/tenant-scope.ts';
import { tenantOfClient } from '../interaction/tenant.ts';
import { userActor } from '../../domain/events/events.ts';
import { AppError } from '../../domain/errors.ts';
import { negotiate } from '../../i18n/index.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import * as s from './account-schemas.ts';
import { ME_FIELD_SCOPES, meView } from './views.ts';
import { requireFirstParty, requireUserScope, userBearerAuth, type UserCaller } from './user-auth.ts';
import { checkBody, parse } from './validate.ts';
import { randomToken } from '../../infra/crypto.ts';
import type { FactorSummary } from '../../domain/authn/mfa.ts';
import type { Device } from '../../domain/authn/webauthn.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import { identityOperations } from './identity-routes.ts';
import { accessContextOperations } from './access-context-routes.ts';
import type { Access } from '../../domain/access/access.ts';

export interface AccountApiDeps {
  provider: Provider;
  ephemeral: EphemeralStore;
  account: AccountFlowDeps;
  federation: Federation;
  access: Pick<Access, 'roles'>;
}

const ACCEPTED = { status: 'accepted', message: 'If the address can receive mail, a message is on its way.' };

/** One account API operation: routing, auth, validation and its OpenAPI entry come from this record. */
export interface AccountOperation {
  method: 'get' | 'post' | 'patch' | 'delete';
  path: string;
  summary: string;
  /** anonymous: limited per IP; user: a bearer access token (see user-auth.ts), limited per user. */
  auth: 'anonymous' | 'user';
  /** A scope the user's token must carry besides openid. */
  scope?: string;
  /**
   * Account management (sessions, password, sign-out everywhere, second factors; devices to come): only
   * tokens issued to first-party clients, checked before anything else (see requireFirstParty).
   */
  firstPartyOnly?: true;
  body?: z.ZodType;
  response: { status: number; schema?: z.ZodType };
  handle(ctx: Context, input: { body: any; params: Record<string, string>; caller: UserCaller | undefined }): Promise<unknown>;
}

/**
 * The account API: anonymous flows under /api/v1/auth (registration, verification, password
 * reset), and the signed-in user's own account under /api/v1/me (bearer access token).
 */
export function accountOperations(deps: AccountApiDeps): AccountOperation[] {
  const { provider, account } = deps;
  // /me: the signed-in user acts (through the client their token was issued to); anonymous flows:
  // the domain names the account's owner.
  const context = (ctx: Context, caller?: UserCaller): ChangeContext => ({
    ...(caller ? { actor: userActor(caller.accountId), clientId: caller.clientId } : {}),
    requestId: ctx.state.requestId as string,
  });
  const localeOf = (ctx: Context, chosen?: string) => negotiate(chosen, ctx.get('accept-language'));
  /** The tenant of an anonymous flow: the named client's, else the default tenant; an unknown client is refused. */
  const tenantFor = async (clientId: string | undefined): Promise<string> => {
    if (!clientId) return DEFAULT_TENANT_ID;
    const tenantId = await tenantOfClient(provider, clientId);
    if (!tenantId) throw new AppError('IDENT_VALIDATION', 'unknown client_id');
    return tenantId;
  };

  return [
    {
      method: 'get', path: '/auth/captcha', auth: 'anonymous', summary: 'An ALTCHA challenge to solve for registration (404 with another CAPTCHA provider)',
      response: { status: 200, schema: s.captchaChallenge },
      async handle() {
        const challenge = await account.captcha.challenge();
        if (!challenge) throw new AppError('IDENT_NOT_FOUND', `the CAPTCHA provider is ${account.captcha.provider}; there is no challenge to fetch`);
        return challenge;
      },
    },
    {
      method: 'post', path: '/auth/register', auth: 'anonymous',
      summary: 'Self-registration; the same answer for a new and a taken address (the mails tell the rest)',
      body: s.register, response: { status: 202, schema: s.registered },
      async handle(ctx, { body }) {
        const policy = await registrationPolicyOf(provider, account.registrationDefaults, body.client_id);
        if (!policy.enabled) throw new AppError('IDENT_REGISTRATION_DISABLED');
        if (!(await account.captcha.verify(body.captcha, ctx.ip))) throw new AppError('IDENT_CAPTCHA_INVALID');
        // The registrant's markers (domain/accounts/address-proof.ts): a handle for API clients, the cookie for
        // browsers. A proof of the address that brings neither back discards the chosen password.
        const handle = randomToken(32);
        await account.registration.register(
          { email: body.email, password: body.password, givenName: body.givenName, familyName: body.familyName, locale: localeOf(ctx, body.locale), tenantId: await tenantFor(body.client_id) },
          policy,
          { ...(body.client_id ? { clientId: body.client_id } : {}), requestId: ctx.state.requestId as string },
          [`registration:${handle}`, ...markRegistrantBrowser(ctx)],
        );
        return { ...ACCEPTED, registration: handle };
      },
    },
    {
      method: 'post', path: '/auth/verify-email', auth: 'anonymous', summary: 'Verify an email address with the mailed code or the link token',
      body: s.verifyEmail, response: { status: 200, schema: s.statusOnly },
      async handle(ctx, { body }) {
        const markers = [...registrantMarkers(ctx), ...(body.registration ? [`registration:${body.registration}`] : [])];
        if ('token' in body) await account.verification.verifyLink(body.token, markers, context(ctx));
        else await account.verification.verifyCode(await tenantFor(body.client_id), body.email, body.code, markers, context(ctx));
        return { status: 'verified' };
      },
    },
    {
      method: 'post', path: '/auth/verify-email/resend', auth: 'anonymous', summary: 'Send a new verification code (same answer for every address)',
      body: s.emailOnly, response: { status: 202, schema: s.accepted },
      async handle(ctx, { body }) {
        account.verification.resend(await tenantFor(body.client_id), body.email, localeOf(ctx, body.locale), context(ctx));
        return ACCEPTED;
      },
    },
    {
      method: 'post', path: '/auth/password-reset/request', auth: 'anonymous',
      summary: 'Mail a reset code and link (3 an hour per IP; per address 3 an hour and 5 a day, past which a solved CAPTCHA is needed; same answer for every address)',
      body: s.resetRequest, response: { status: 202, schema: s.accepted },
      async handle(ctx, { body }) {
        const human = await captchaVerdict(account.captcha, body.captcha, ctx.ip);
        await account.passwordReset.request(body.email, { ip: clientLimitKey(ctx), locale: localeOf(ctx, body.locale), human, tenantId: await tenantFor(body.client_id) }, context(ctx));
        return ACCEPTED;
      },
    },
    {
      method: 'post', path: '/auth/password-reset/confirm', auth: 'anonymous',
      summary: 'Set a new password with the mailed code or link token; ends every session and refresh token',
      body: s.resetConfirm, response: { status: 200, schema: s.statusOnly },
      async handle(ctx, { body }) {
        const { password, client_id: clientId, ...proof } = body;
        await account.passwordReset.confirm('token' in proof ? proof : { ...proof, tenantId: await tenantFor(clientId) }, password, context(ctx));
        return { status: 'password_reset' };
      },
    },
    {
      method: 'post', path: '/auth/logout-all', auth: 'user', firstPartyOnly: true, summary: 'End every session, grant and token of the caller',
      response: { status: 204 },
      async handle(ctx, { caller }) {
        await account.selfService.logoutAll(caller!.accountId, context(ctx, caller));
        return undefined;
      },
    },
    {
      method: 'get', path: '/me', auth: 'user', summary: 'Own profile: the fields the token\'s scopes cover (email: email; names, locale, time zone: profile)',
      response: { status: 200, schema: s.me },
      async handle(_ctx, { caller }) {
        return meView(await account.selfService.profile(caller!.accountId), caller!);
      },
    },
    {
      method: 'patch', path: '/me', auth: 'user', scope: 'profile', summary: 'Change names, locale and time zone',
      body: s.profileUpdate, response: { status: 200, schema: s.me },
      async handle(ctx, { body, caller }) {
        // Each field needs the scope that shows it; one not covered refuses the whole change.
        for (const field of Object.keys(body) as Array<keyof typeof ME_FIELD_SCOPES>) requireUserScope(ctx, ME_FIELD_SCOPES[field]);
        return meView(await account.selfService.updateProfile(caller!.accountId, body, context(ctx, caller)), caller!);
      },
    },
    {
      method: 'post', path: '/me/password', auth: 'user', firstPartyOnly: true, summary: 'Change the password (the current one is needed); ends the other sessions',
      body: s.passwordChange, response: { status: 204 },
      async handle(ctx, { body, caller }) {
        await account.selfService.changePassword(caller!.accountId, body.currentPassword, body.newPassword, caller!.sessionUid, context(ctx, caller));
        return undefined;
      },
    },
    {
      method: 'get', path: '/me/sessions', auth: 'user', firstPartyOnly: true, summary: 'Active sessions with device and last use',
      response: { status: 200, schema: s.sessionList },
      async handle(_ctx, { caller }) {
        const sessions = await account.selfService.sessions(caller!.accountId, caller!.sessionUid);
        return {
          data: sessions.map((x) => ({
            ...x,
            signedInAt: x.signedInAt.toISOString(),
            lastUsedAt: x.lastUsedAt.toISOString(),
            expiresAt: x.expiresAt?.toISOString() ?? null,
          })),
        };
      },
    },
    {
      method: 'delete', path: '/me/sessions/:id', auth: 'user', firstPartyOnly: true, summary: 'End one session and what was authorized in it',
      response: { status: 204 },
      async handle(ctx, { params, caller }) {
        if (params.id!.length > 128) throw new AppError('IDENT_SESSION_NOT_FOUND');
        await account.selfService.revokeSession(caller!.accountId, params.id!, context(ctx, caller));
        return undefined;
      },
    },
    {
      method: 'get', path: '/me/mfa', auth: 'user', firstPartyOnly: true, summary: 'Confirmed second factors (totp, webauthn: security keys and passkeys, sms, email, recovery); never a secret, a phone only masked',
      response: { status: 200, schema: s.mfaFactorList },
      async handle(_ctx, { caller }) {
        return { data: (await account.mfa.list(caller!.accountId)).map(factorView) };
      },
    },
    {
      method: 'post', path: '/me/mfa/totp/enroll', auth: 'user', firstPartyOnly: true,
      summary: 'Start a TOTP enrollment: the secret, its otpauth:// URI and a QR code, shown only here; confirm within 10 minutes',
      response: { status: 201, schema: s.totpEnrollment },
      async handle(_ctx, { caller }) {
        const enrollment = await account.mfa.enrollTotp(caller!.accountId);
        return { ...enrollment, expiresAt: enrollment.expiresAt.toISOString() };
      },
    },
    {
      method: 'post', path: '/me/mfa/totp/confirm', auth: 'user', firstPartyOnly: true,
      summary: 'Activate a TOTP enrollment with a current code (replaces an earlier authenticator); ends the other sessions',
      body: s.totpConfirm, response: { status: 200, schema: s.mfaFactor },
      async handle(ctx, { body, caller }) {
        return factorView(await account.mfa.confirmTotp(caller!.accountId, body.factorId, body.code, caller!.sessionUid, context(ctx, caller)));
      },
    },
    {
      method: 'post', path: '/me/mfa/sms/enroll', auth: 'user', firstPartyOnly: true,
      summary: 'Start adding a phone: a code is texted to it (60 s between sends, 5 a day per number); the phone counts once confirmed. 422 IDENT_SMS_DISABLED with SMS_PROVIDER=off, 503 IDENT_SMS_UNAVAILABLE when the text could not be sent',
      body: s.smsEnroll, response: { status: 201, schema: s.smsEnrollment },
      async handle(ctx, { body, caller }) {
        const enrollment = await account.codeFactors.enrollSms(caller!.accountId, body.phone, localeOf(ctx));
        return { factorId: enrollment.factorId, phone: enrollment.sentTo, expiresAt: enrollment.expiresAt.toISOString() };
      },
    },
    {
      method: 'post', path: '/me/mfa/sms/confirm', auth: 'user', firstPartyOnly: true,
      summary: 'Confirm a phone with the texted code (replaces an earlier phone); ends the other sessions',
      body: s.codeConfirm, response: { status: 200, schema: s.mfaFactor },
      async handle(ctx, { body, caller }) {
        return factorView(await account.codeFactors.confirmSms(caller!.accountId, body.factorId, body.code, caller!.sessionUid, context(ctx, caller)));
      },
    },
    {
      method: 'post', path: '/me/mfa/email/enroll', auth: 'user', firstPartyOnly: true,
      summary: 'Start adding email codes: a code is mailed to the account\'s verified address (422 IDENT_EMAIL_UNVERIFIED otherwise)',
      response: { status: 201, schema: s.emailEnrollment },
      async handle(ctx, { caller }) {
        const enrollment = await account.codeFactors.enrollEmail(caller!.accountId, localeOf(ctx));
        return { factorId: enrollment.factorId, expiresAt: enrollment.expiresAt.toISOString() };
      },
    },
    {
      method: 'post', path: '/me/mfa/email/confirm', auth: 'user', firstPartyOnly: true,
      summary: 'Confirm email codes with the mailed code; ends the other sessions',
      body: s.codeConfirm, response: { status: 200, schema: s.mfaFactor },
      async handle(ctx, { body, caller }) {
        return factorView(await account.codeFactors.confirmEmail(caller!.accountId, body.factorId, body.code, caller!.sessionUid, context(ctx, caller)));
      },
    },
    {
      method: 'post', path: '/me/mfa/recovery-codes', auth: 'user', firstPartyOnly: true,
      summary: 'A new set of 10 single-use recovery codes, shown only here (the earlier set stops working); ends the other sessions',
      response: { status: 201, schema: s.recoveryCodes },
      async handle(ctx, { caller }) {
        return { codes: await account.mfa.regenerateRecoveryCodes(caller!.accountId, caller!.sessionUid, context(ctx, caller)) };
      },
    },
    {
      method: 'post', path: '/me/mfa/webauthn/register/options', auth: 'user', firstPartyOnly: true,
      summary: 'Start registering a passkey or security key: the options for navigator.credentials.create (the user\'s own credentials excluded); register within 5 minutes',
      body: s.webauthnOptionsRequest, response: { status: 200, schema: s.webauthnCreationOptions },
      async handle(_ctx, { body, caller }) {
        return account.webauthn.registrationOptions(caller!.accountId, body.kind);
      },
    },
    {
      method: 'post', path: '/me/mfa/webauthn/register', auth: 'user', firstPartyOnly: true,
      summary: 'Finish the registration with the browser\'s answer: a new security key or passkey; ends the other sessions',
      body: s.webauthnRegister, response: { status: 201, schema: s.mfaFactor },
      async handle(ctx, { body, caller }) {
        const device = await account.webauthn.register(caller!.accountId, body.response, body.name, caller!.sessionUid, context(ctx, caller));
        return { id: device.id, type: 'webauthn', name: device.name, createdAt: device.createdAt.toISOString(), lastUsedAt: null };
      },
    },
    {
      method: 'get', path: '/me/devices', auth: 'user', firstPartyOnly: true, summary: 'Registered security keys and passkeys with name and last use',
      response: { status: 200, schema: s.deviceList },
      async handle(_ctx, { caller }) {
        return { data: (await account.webauthn.devices(caller!.accountId)).map(deviceView) };
      },
    },
    {
      method: 'delete', path: '/me/devices/:id', auth: 'user', firstPartyOnly: true, summary: 'Remove a security key or passkey; ends the other sessions',
      response: { status: 204 },
      async handle(ctx, { params, caller }) {
        // Only a WebAuthn factor is a device: another factor's id is not found here.
        const devices = await account.webauthn.devices(caller!.accountId);
        if (!devices.some((d) => d.id === params.id)) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
        await account.mfa.remove(caller!.accountId, params.id!, caller!.sessionUid, context(ctx, caller));
        return undefined;
      },
    },
    {
      method: 'delete', path: '/me/mfa/:factorId', auth: 'user', firstPartyOnly: true, summary: 'Remove a second factor; ends the other sessions. Under MFA_POLICY=required the last second factor (recovery codes are not one) cannot be removed, under phishing-resistant neither the last WebAuthn credential: 409 IDENT_MFA_LAST_FACTOR',
      response: { status: 204 },
      async handle(ctx, { params, caller }) {
        await account.mfa.remove(caller!.accountId, params.factorId!, caller!.sessionUid, context(ctx, caller));
        return undefined;
      },
    },

    ...identityOperations(deps.federation, context),
    ...accessContextOperations(deps.access.roles),
  ];
}

function deviceView(d: Device) {
  return { ...d, createdAt: d.createdAt.toISOString(), lastUsedAt: d.lastUsedAt?.toISOString() ?? null };
}

function factorView(f: FactorSummary) {
  return {
    id: f.id, type: f.type, name: f.name, createdAt: f.createdAt.toISOString(), lastUsedAt: f.lastUsedAt?.toISOString() ?? null,
    ...(f.phone ? { phone: f.phone } : {}),
  };
}

export function accountApiRoutes(deps: AccountApiDeps, operations: AccountOperation[]) {
  const router = new Router({ prefix: '/api/v1' });
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '16kb', encoding: 'utf-8' });
  const perIp = rateLimit(deps.ephemeral.limiter('auth-api-ip', deps.account.authRateLimitPerIp, 60), clientLimitKey);
  // First-party calls share the user's budget with the account console; a third-party client has
  // a budget of its own per user, so it cannot spend the user's and lock them out of the console.
  const perUser = rateLimit(deps.ephemeral.limiter('me-api-user', deps.account.meRateLimitPerUser, 60), (ctx) => {
    const caller = ctx.state.user as UserCaller;
    return caller.firstParty ? caller.accountId : `${caller.accountId}:${caller.clientId}`;
  });
  const auth = userBearerAuth(deps.provider);

  // Answers (errors included) are personal or one-time: never cached.
  const noStore: Middleware = async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    await next();
  };

  const firstPartyOnly: Middleware = async (ctx, next) => {
    requireFirstParty(ctx);
    await next();
  };

  for (const op of operations) {
    // A refused third-party call is turned away before it spends the user's budget.
    const guards: Middleware[] = op.auth === 'user' ? [auth, ...(op.firstPartyOnly ? [firstPartyOnly] : []), perUser] : [perIp];
    router[op.method](op.path, noStore, ...guards, json, async (ctx) => {
      const caller = ctx.state.user as UserCaller | undefined;
      if (op.scope) requireUserScope(ctx, op.scope);
      let body: unknown;
      if (op.body) {
        if (!ctx.is('application/json')) throw new AppError('IDENT_UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
        body = parse(op.body, checkBody(ctx.request.body), 'body');
      }
      const result = await op.handle(ctx, { body, params: ctx.params, caller });
      ctx.status = op.response.status;
      if (result !== undefined) ctx.body = result;
    });
  }
  return router;
}
