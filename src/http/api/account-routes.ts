import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import type { AccountFlowDeps } from '../account-flows.ts';
import { rateLimit } from '../middleware/rate-limit.ts';
import { registrationPolicyOf } from '../registration.ts';
import { DEFAULT_TENANT } from '../../domain/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import type { UserRow } from '../../repos/users.ts';
import { negotiate } from '../../i18n/index.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import * as s from './account-schemas.ts';
import { requireUserScope, userBearerAuth, type UserCaller } from './user-auth.ts';
import { checkBody, parse } from './validate.ts';

export interface AccountApiDeps {
  provider: Provider;
  ephemeral: EphemeralStore;
  account: AccountFlowDeps;
}

export function meView(user: UserRow) {
  return {
    id: user.id,
    email: user.email,
    emailVerified: user.email_verified,
    givenName: user.given_name,
    familyName: user.family_name,
    locale: user.locale,
    timezone: user.timezone,
    createdAt: user.created_at.toISOString(),
    passwordChangedAt: user.password_changed_at?.toISOString() ?? null,
  };
}

const ACCEPTED = { status: 'accepted', message: 'If the address can receive mail, a message is on its way.' };

/**
 * The account API: anonymous flows under /api/v1/auth (registration, verification, password
 * reset), and the signed-in user's own account under /api/v1/me (bearer access token).
 */
export function accountApiRoutes(deps: AccountApiDeps) {
  const { provider, account } = deps;
  const router = new Router({ prefix: '/api/v1' });
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '16kb', encoding: 'utf-8' });
  const anonLimit = rateLimit(deps.ephemeral.limiter('auth-api-ip', account.authRateLimitPerIp, 60), (ctx) => ctx.ip);
  const userLimit = rateLimit(deps.ephemeral.limiter('me-api-user', account.meRateLimitPerUser, 60), (ctx) => (ctx.state.user as UserCaller).accountId);
  const auth = userBearerAuth(provider);

  const body = <T extends import('zod').ZodType>(ctx: Context, schema: T) => {
    if (!ctx.is('application/json')) throw new AppError('IDENT_UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
    return parse(schema, checkBody(ctx.request.body), 'body');
  };
  const context = (ctx: Context) => ({
    actor: (ctx.state.user as UserCaller | undefined)?.clientId ?? null,
    requestId: ctx.state.requestId as string,
  });
  const localeOf = (ctx: Context, chosen?: string) => negotiate(chosen, ctx.get('accept-language'));
  const noStore: Middleware = async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    await next();
  };

  router.use(noStore);

  router.get('/auth/captcha', anonLimit, async (ctx) => {
    const challenge = await account.captcha.challenge();
    if (!challenge) throw new AppError('IDENT_NOT_FOUND', `the CAPTCHA provider is ${account.captcha.provider}; there is no challenge to fetch`);
    ctx.body = challenge;
  });

  router.post('/auth/register', anonLimit, json, async (ctx) => {
    const input = body(ctx, s.register);
    const policy = await registrationPolicyOf(provider, account.registrationDefaults, input.client_id);
    if (!policy.enabled) throw new AppError('IDENT_REGISTRATION_DISABLED');
    if (!(await account.captcha.verify(input.captcha, ctx.ip))) throw new AppError('IDENT_CAPTCHA_INVALID');
    await account.registration.register(
      { email: input.email, password: input.password, givenName: input.givenName, familyName: input.familyName, locale: localeOf(ctx, input.locale) },
      policy,
      { actor: input.client_id ?? null, requestId: ctx.state.requestId as string },
    );
    // The same answer for a new address and a taken one: the mails tell the rest.
    ctx.status = 202;
    ctx.body = ACCEPTED;
  });

  router.post('/auth/verify-email', anonLimit, json, async (ctx) => {
    const input = body(ctx, s.verifyEmail);
    if ('token' in input) await account.verification.verifyLink(input.token, context(ctx));
    else await account.verification.verifyCode(DEFAULT_TENANT, input.email, input.code, context(ctx));
    ctx.body = { status: 'verified' };
  });

  router.post('/auth/verify-email/resend', anonLimit, json, async (ctx) => {
    const input = body(ctx, s.emailOnly);
    account.verification.resend(DEFAULT_TENANT, input.email, localeOf(ctx, input.locale));
    ctx.status = 202;
    ctx.body = ACCEPTED;
  });

  router.post('/auth/password-reset/request', anonLimit, json, async (ctx) => {
    const input = body(ctx, s.emailOnly);
    await account.passwordReset.request(input.email, { ip: ctx.ip, locale: localeOf(ctx, input.locale) }, context(ctx));
    ctx.status = 202;
    ctx.body = ACCEPTED;
  });

  router.post('/auth/password-reset/confirm', anonLimit, json, async (ctx) => {
    const { password, ...proof } = body(ctx, s.resetConfirm);
    await account.passwordReset.confirm(proof, password, context(ctx));
    ctx.body = { status: 'password_reset' };
  });

  router.post('/auth/logout-all', auth, userLimit, async (ctx) => {
    await account.selfService.logoutAll((ctx.state.user as UserCaller).accountId);
    ctx.status = 204;
  });

  router.get('/me', auth, userLimit, async (ctx) => {
    ctx.body = meView(await account.selfService.profile((ctx.state.user as UserCaller).accountId));
  });

  router.patch('/me', auth, userLimit, json, async (ctx) => {
    requireUserScope(ctx, 'profile');
    const input = body(ctx, s.profileUpdate);
    ctx.body = meView(await account.selfService.updateProfile((ctx.state.user as UserCaller).accountId, input, context(ctx)));
  });

  router.post('/me/password', auth, userLimit, json, async (ctx) => {
    const input = body(ctx, s.passwordChange);
    const caller = ctx.state.user as UserCaller;
    await account.selfService.changePassword(caller.accountId, input.currentPassword, input.newPassword, caller.sessionUid, context(ctx));
    ctx.status = 204;
  });

  router.get('/me/sessions', auth, userLimit, async (ctx) => {
    const caller = ctx.state.user as UserCaller;
    const sessions = await account.selfService.sessions(caller.accountId, caller.sessionUid);
    ctx.body = {
      data: sessions.map((x) => ({
        ...x,
        signedInAt: x.signedInAt.toISOString(),
        lastUsedAt: x.lastUsedAt.toISOString(),
        expiresAt: x.expiresAt?.toISOString() ?? null,
      })),
    };
  });

  router.delete('/me/sessions/:id', auth, userLimit, async (ctx) => {
    const id = ctx.params.id!;
    if (id.length > 128) throw new AppError('IDENT_SESSION_NOT_FOUND');
    await account.selfService.revokeSession((ctx.state.user as UserCaller).accountId, id);
    ctx.status = 204;
  });

  return router;
}
