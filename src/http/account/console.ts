import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import * as oidc from 'openid-client';
import { AppError } from '../../domain/errors.ts';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import { userActor } from '../../domain/events/events.ts';
import { isDisplayName } from '../../domain/accounts/display-names.ts';
import type { SelfService } from '../../domain/accounts/self-service.ts';
import type { Mfa, TotpEnrollment } from '../../domain/authn/mfa.ts';
import { groupSecret } from '../../domain/authn/totp.ts';
import type { CodeFactors } from '../../domain/authn/code-factors.ts';
import { CODE_FACTOR_ACTIONS, CODE_FACTOR_NOTICES, codeFactorConsoleRoutes, codeFactorsView, type CodeFactorState } from './console-code-factors.ts';
import type { WebAuthn } from '../../domain/authn/webauthn.ts';
import { LOCALES, negotiate, translate, type Locale, type MessageKey } from '../../i18n/index.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { Logger } from '../../infra/logger.ts';
import { resolveUserToken, type UserCaller } from '../api/user-auth.ts';
import type { RenderPage } from '../render.ts';
import { clientLimitKey } from '../middleware/rate-limit.ts';
import { ACCOUNT_CONSOLE_CLIENT_ID } from './client.ts';
import { createConsoleSessions, type ConsoleTokens } from './console-session.ts';
import { summarizeUserAgent } from './device.ts';
import { createConsoleRelyingParty } from './relying-party.ts';
import { policyReasonsOf } from '../pages/flow-messages.ts';
import { isTimeZone } from '../api/account-schemas.ts';
import type { Limiter } from '../../infra/ephemeral/index.ts';
import { consoleWebAuthn } from './console-webauthn.ts';
import { consoleIdentities } from './console-identities.ts';
import { currentTimeZoneName, TIME_ZONES } from '../../domain/accounts/time-zones.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import type { FederationBinding } from '../federation-binding.ts';

export interface AccountConsoleDeps {
  provider: Provider;
  issuer: string;
  /** Where this instance itself answers (http://127.0.0.1:PORT): the console's back-channel calls go there. */
  internalOrigin: () => string;
  selfService: SelfService;
  /** Second factors of the signed-in user (TOTP, recovery codes). */
  mfa: Mfa;
  /** SMS and email codes of the signed-in user (console-code-factors.ts). */
  codeFactors: CodeFactors;
  /** Security keys and passkeys of the signed-in user. */
  webauthn: WebAuthn;
  /** Linked identity providers ("Sign-in services"). */
  federation: Federation;
  federationBinding: FederationBinding;
  ephemeral: EphemeralStore;
  box: SecretBox;
  renderPage: RenderPage;
  logger: Logger;
  /** Form posts per user (shared with /api/v1/me: the same person, the same budget). */
  userLimiter: Limiter;
  /** Anonymous visits (starting a sign-in, coming back from it) per IP, like the other anonymous pages. */
  anonymousLimiter: Limiter;
}

type Profile = Awaited<ReturnType<SelfService['profile']>>;

/** A request of a signed-in console user. */
interface Signed {
  sessionId: string;
  tokens: ConsoleTokens;
  caller: UserCaller;
}

interface ProfileForm {
  givenName: string;
  familyName: string;
  locale: string;
  timezone: string;
}

/** What a re-rendered page shows besides the stored state: the rejected input and why. */
interface PageState {
  notice?: MessageKey | undefined;
  profileForm?: ProfileForm;
  profileErrors?: Partial<Record<keyof ProfileForm, MessageKey>>;
  passwordError?: { message: MessageKey; reasons: MessageKey[] };
  sessionsError?: MessageKey;
  mfaError?: MessageKey;
  identitiesError?: MessageKey;
  /** Right after "Set up": the new secret, shown this once and never again. */
  enrollment?: TotpEnrollment;
  /** After a wrong code: the pending enrollment to confirm again (its secret is not shown again). */
  confirmAgain?: string;
  /** Right after creating them: the recovery codes, shown this once. */
  recoveryCodes?: string[];
  /** A phone or email-code enrollment waiting for its code. */
  codeFactors?: CodeFactorState;
}

const SCOPE = 'openid profile email';


// Flash messages after a redirect: the query names one of these, never carries text.
const NOTICES: Record<string, MessageKey> = {
  profile: 'account.done.profile',
  password: 'account.done.password',
  revoked: 'account.done.revoked',
  mfa_totp: 'account.mfa.done.totp',
  mfa_removed: 'account.mfa.done.removed',
  mfa_webauthn: 'account.mfa.done.webauthn',
  ...CODE_FACTOR_NOTICES,
};

// The label of each factor type in the list (types another module adds fall back to their stored name).
const FACTOR_LABELS: Partial<Record<string, MessageKey>> = {
  totp: 'account.mfa.type.totp',
  recovery: 'account.mfa.type.recovery',
  sms: 'account.mfa.type.sms',
  email: 'account.mfa.type.email',
};

// Factor ids are UUIDs; anything else cannot name one of the user's factors.
const FACTOR_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;


const isLocale = (value: unknown): value is Locale => (LOCALES as readonly unknown[]).includes(value);
const text = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
// Display names: the one rule of every entry (domain/accounts/display-names.ts).
const validName = isDisplayName;

/**
 * The account console under /account: a server-rendered relying party of this provider (client
 * `account-console`, code + PKCE). Its session holds the console's access token, and every request
 * checks that token with the provider, so a revoked token or an ended session ends console access
 * at once.
 */
export function accountConsoleRoutes(deps: AccountConsoleDeps) {
  const { provider, issuer, selfService, mfa, renderPage, logger } = deps;
  const rp = createConsoleRelyingParty(provider, issuer, deps.internalOrigin);
  const sessions = createConsoleSessions(deps.ephemeral, deps.box, issuer);
  const router = new Router({ prefix: '/account' });
  const form = bodyParser({ enableTypes: ['form'], formLimit: '16kb' });
  // Absolute URLs under the issuer, so they hold behind a proxy that maps the issuer's path.
  const consoleUrl = `${issuer}/account`;
  const actions = {
    profile: `${consoleUrl}/profile`,
    password: `${consoleUrl}/password`,
    revoke: `${consoleUrl}/sessions/revoke`,
    revokeAll: `${consoleUrl}/sessions/revoke-all`,
    logout: `${consoleUrl}/logout`,
    totpEnroll: `${consoleUrl}/mfa/totp/enroll`,
    totpConfirm: `${consoleUrl}/mfa/totp/confirm`,
    recoveryCodes: `${consoleUrl}/mfa/recovery-codes`,
    mfaRemove: `${consoleUrl}/mfa/remove`,
    ...CODE_FACTOR_ACTIONS(consoleUrl),
  };

  // The signed-in user acts on their own account.
  const changeContext = (ctx: Context, accountId: string): ChangeContext => ({ actor: userActor(accountId), requestId: ctx.state.requestId as string });
  const bodyOf = (ctx: Context) => (ctx.request.body ?? {}) as Record<string, unknown>;

  function seeOther(ctx: Context, url: string) {
    ctx.status = 303;
    ctx.redirect(url);
  }

  function problem(ctx: Context, message: MessageKey, status: number) {
    renderPage(ctx, 'account-problem', { title: 'account.problem.title', message, back: consoleUrl }, status);
  }

  /** The signed-in console user, or undefined (and the console session dropped) when the token no longer works. */
  async function signedIn(ctx: Context): Promise<Signed | undefined> {
    const session = await sessions.read(ctx);
    if (!session) return undefined;
    const caller = await resolveUserToken(provider, session.tokens.accessToken);
    if (!caller || caller.clientId !== ACCOUNT_CONSOLE_CLIENT_ID) {
      await sessions.end(ctx);
      return undefined;
    }
    return { sessionId: session.id, tokens: session.tokens, caller };
  }

  /** Every form post: a console session and its CSRF token, or nothing changes. */
  async function signedInPost(ctx: Context): Promise<Signed | undefined> {
    const signed = await signedIn(ctx);
    if (!signed) {
      // A cross-site post carries no SameSite=Lax cookie either; both just go to sign in.
      seeOther(ctx, consoleUrl);
      return undefined;
    }
    if (!sessions.verifyCsrf(signed.sessionId, bodyOf(ctx).csrf)) {
      problem(ctx, 'error.csrf', 403);
      return undefined;
    }
    try {
      await deps.userLimiter.consume(signed.caller.accountId);
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      problem(ctx, 'error.rate_limited', 429);
      return undefined;
    }
    return signed;
  }

  /** Counts an anonymous request against the per-IP budget; false (and a 429 page) past it. */
  async function anonymousAllowed(ctx: Context): Promise<boolean> {
    try {
      await deps.anonymousLimiter.consume(clientLimitKey(ctx));
      return true;
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      ctx.set('Retry-After', String(Math.ceil(((limited as { msBeforeNext?: number }).msBeforeNext ?? 60_000) / 1000)));
      problem(ctx, 'error.rate_limited', 429);
      return false;
    }
  }

  /** Leaves for the provider's authorization endpoint; the provider's SSO session makes it seamless. */
  async function startSignIn(ctx: Context) {
    const config = await rp.configuration();
    const checks = { state: oidc.randomState(), nonce: oidc.randomNonce(), verifier: oidc.randomPKCECodeVerifier() };
    sessions.beginSignIn(ctx, checks);
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: rp.redirectUri,
      scope: SCOPE,
      code_challenge: await oidc.calculatePKCECodeChallenge(checks.verifier),
      code_challenge_method: 'S256',
      state: checks.state,
      nonce: checks.nonce,
    });
    seeOther(ctx, url.href);
  }

  async function clientNames(ids: Iterable<string>): Promise<Map<string, string>> {
    const names = new Map<string, string>();
    for (const id of new Set(ids)) {
      const client = await provider.Client.find(id).catch(() => undefined);
      names.set(id, client?.clientName ?? id);
    }
    return names;
  }

  function deviceLabel(locale: Locale, userAgent: string | null): string {
    const { browser, os } = summarizeUserAgent(userAgent);
    if (browser && os) return translate(locale, 'account.sessions.browser_on_os', { browser, os });
    return browser ?? os ?? translate(locale, 'account.sessions.unknown_device');
  }

  async function renderConsole(ctx: Context, signed: Signed, state: PageState = {}, status = 200) {
    const { accountId, sessionUid } = signed.caller;
    const user: Profile = await selfService.profile(accountId);
    const list = await selfService.sessions(accountId, sessionUid);
    // The user's chosen language wins over the browser's.
    // A language the person picked; else the one carried from the pages before (ui_locales); else the browser's.
    const locale = isLocale(user.locale) ? user.locale : negotiate(ctx.state.uiLocale, ctx.get('accept-language'));
    const timeZone = user.timezone && isTimeZone(user.timezone) ? user.timezone : 'UTC';
    const when = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone });
    const names = await clientNames(list.flatMap((s) => s.clients));
    const factors = await mfa.list(accountId);
    const recoveryLeft = factors.some((f) => f.type === 'recovery') ? await mfa.remainingRecoveryCodes(accountId) : 0;
    const kinds = factors.some((f) => f.type === 'webauthn') ? await webauthnPart.kinds(accountId) : new Map();
    const identities = { ...(await identitiesPart.view(accountId, user.tenant_id, (d) => when.format(d))), error: state.identitiesError };
    renderPage(
      ctx,
      'account',
      {
        title: 'account.title',
        locale,
        email: user.email,
        csrf: sessions.csrfToken(signed.sessionId),
        actions: { ...actions, ...webauthnPart.actions },
        notice: state.notice,
        profile: state.profileForm ?? {
          givenName: user.given_name ?? '',
          familyName: user.family_name ?? '',
          locale: user.locale ?? '',
          // Stored before names were normalised: shown (and saved) under its current name.
          timezone: user.timezone ? currentTimeZoneName(user.timezone) : '',
        },
        profileErrors: state.profileErrors ?? {},
        locales: LOCALES.map((code) => ({ code, label: translate(locale, `lang.${code}`) })),
        // Any zone the account API accepts (isTimeZone) is kept and shown as well.
        timeZones: user.timezone && !TIME_ZONES.includes(currentTimeZoneName(user.timezone)) ? [user.timezone, ...TIME_ZONES] : TIME_ZONES,
        passwordError: state.passwordError,
        sessionsError: state.sessionsError,
        timeZone,
        mfa: {
          error: state.mfaError,
          hasTotp: factors.some((f) => f.type === 'totp'),
          hasRecovery: factors.some((f) => f.type === 'recovery'),
          factors: factors.map((f) => ({
            id: f.id,
            type: f.type,
            // A security key or passkey goes by the name it was given (a user may have several).
            label: f.type !== 'webauthn' && FACTOR_LABELS[f.type] ? translate(locale, FACTOR_LABELS[f.type]!) : f.name,
            kind: kinds.has(f.id) ? translate(locale, kinds.get(f.id) === 'passkey' ? 'account.mfa.type.passkey' : 'account.mfa.type.security_key') : undefined,
            name: f.name,
            detail: f.phone,
            remaining: f.type === 'recovery' ? recoveryLeft : undefined,
            createdAt: when.format(f.createdAt),
            createdIso: f.createdAt.toISOString(),
            lastUsedAt: f.lastUsedAt ? when.format(f.lastUsedAt) : undefined,
            lastUsedIso: f.lastUsedAt?.toISOString(),
          })),
          enrollment: state.enrollment && {
            factorId: state.enrollment.factorId,
            qrCode: state.enrollment.qrCode,
            secret: groupSecret(state.enrollment.secret),
            expiresAt: when.format(state.enrollment.expiresAt),
            expiresIso: state.enrollment.expiresAt.toISOString(),
          },
          confirmAgain: state.confirmAgain,
          recoveryCodes: state.recoveryCodes,
          codes: codeFactorsView(deps.codeFactors, user, factors, state.codeFactors),
        },
        identities,
        sessions: list.map((s) => ({
          id: s.id,
          current: s.current,
          device: deviceLabel(locale, s.userAgent),
          userAgent: s.userAgent ?? '',
          ip: s.ip ?? translate(locale, 'account.sessions.unknown'),
          signedInAt: when.format(s.signedInAt),
          signedInIso: s.signedInAt.toISOString(),
          lastUsedAt: when.format(s.lastUsedAt),
          lastUsedIso: s.lastUsedAt.toISOString(),
          apps: s.clients.map((id) => names.get(id) ?? id).join(', '),
        })),
      },
      status,
    );
  }

  /** A user suspended or deactivated while signed in: the domain refuses; the console lets go. */
  const handle = (work: (ctx: Context) => Promise<void>) => async (ctx: Context) => {
    try {
      await work(ctx);
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'IDENT_UNAUTHENTICATED') throw err;
      await sessions.end(ctx);
      problem(ctx, 'error.inactive', 403);
    }
  };

  // Nothing under /account may be cached: pages show personal data, redirects carry flows.
  router.use(async (ctx, next) => {
    ctx.set('Cache-Control', 'no-store');
    await next();
  });

  // Security keys and passkeys: their own module, on this console's checks and page.
  const webauthnPart = consoleWebAuthn(deps.webauthn, {
    router,
    form,
    consoleUrl,
    signedInPost,
    renderWithError: (ctx, signed, mfaError, status) => renderConsole(ctx, signed, { mfaError }, status),
    seeOther,
    changeContext,
    handle,
  });

  // Linked identity providers: their own module, on this console's checks and page.
  const identitiesPart = consoleIdentities(deps.federation, deps.federationBinding, {
    router,
    form,
    consoleUrl,
    signedInPost,
    signedIn,
    problem,
    renderWithError: (ctx, signed, identitiesError, status) => renderConsole(ctx, signed, { identitiesError }, status),
    seeOther,
    changeContext,
    handle,
  });

  router.get(
    '/',
    handle(async (ctx) => {
      const signed = await signedIn(ctx);
      if (!signed) return (await anonymousAllowed(ctx)) ? startSignIn(ctx) : undefined;
      const done = text(ctx.query.done);
      const notices: Record<string, MessageKey> = { ...NOTICES, ...identitiesPart.notices };
      await renderConsole(ctx, signed, { notice: done && Object.hasOwn(notices, done) ? notices[done] : undefined });
    }),
  );

  router.get('/callback', async (ctx) => {
    if (!(await anonymousAllowed(ctx))) return;
    const checks = await sessions.takeSignIn(ctx);
    // No redirect back to sign-in here: a browser that drops our cookie would loop forever.
    if (!checks) return problem(ctx, 'account.problem.signin_expired', 400);
    const config = await rp.configuration();
    let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
    try {
      tokens = await oidc.authorizationCodeGrant(config, new URL(`${rp.redirectUri}${ctx.search}`), {
        pkceCodeVerifier: checks.verifier,
        expectedState: checks.state,
        expectedNonce: checks.nonce,
        idTokenExpected: true,
      });
    } catch (err) {
      // Refusals (access_denied, invalid_grant, a bad state) are the user's to retry; network
      // failures of the back channel are ours and go on to the 500 handler.
      if (!(err instanceof oidc.ClientError || err instanceof oidc.ResponseBodyError || err instanceof oidc.AuthorizationResponseError)) throw err;
      const e = err as { error?: string; code?: string };
      logger.warn({ requestId: ctx.state.requestId, reason: e.error ?? e.code ?? err.message }, 'account console sign-in did not complete');
      return problem(ctx, 'account.problem.signin_failed', 400);
    }
    const expiresIn = tokens.expiresIn() ?? 0;
    if (!tokens.id_token || expiresIn <= 0) return problem(ctx, 'account.problem.signin_failed', 400);
    await sessions.create(ctx, { accessToken: tokens.access_token, idToken: tokens.id_token, expiresAt: Date.now() + expiresIn * 1000 });
    seeOther(ctx, consoleUrl);
  });

  router.post(
    '/profile',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const body = bodyOf(ctx);
      const fields = {
        givenName: body.given_name,
        familyName: body.family_name,
        locale: body.locale,
        timezone: body.timezone,
      };
      const errors: NonNullable<PageState['profileErrors']> = {};
      // A field left out of the post is left unchanged; one sent twice (an array) is refused.
      const shown: ProfileForm = {
        givenName: text(fields.givenName) ?? '',
        familyName: text(fields.familyName) ?? '',
        locale: text(fields.locale) ?? '',
        timezone: text(fields.timezone) ?? '',
      };
      const valid = (value: unknown, ok: (v: string) => boolean) => value === undefined || (typeof value === 'string' && ok(value));
      if (!valid(fields.givenName, validName)) errors.givenName = 'account.profile.error.name';
      if (!valid(fields.familyName, validName)) errors.familyName = 'account.profile.error.name';
      if (!valid(fields.locale, (v) => v === '' || isLocale(v))) errors.locale = 'account.profile.error.locale';
      if (!valid(fields.timezone, (v) => v === '' || isTimeZone(v))) errors.timezone = 'account.profile.error.timezone';
      if (Object.keys(errors).length > 0) return renderConsole(ctx, signed, { profileForm: shown, profileErrors: errors }, 400);

      const orNull = (value: unknown) => (value === undefined ? undefined : (value as string).trim() || null);
      await selfService.updateProfile(
        signed.caller.accountId,
        {
          givenName: orNull(fields.givenName),
          familyName: orNull(fields.familyName),
          locale: orNull(fields.locale),
          timezone: orNull(fields.timezone),
        },
        changeContext(ctx, signed.caller.accountId),
      );
      seeOther(ctx, `${consoleUrl}?done=profile`);
    }),
  );

  router.post(
    '/password',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const body = bodyOf(ctx);
      const current = text(body.current_password);
      const next = text(body.new_password);
      if (!current || !next) {
        return renderConsole(ctx, signed, { passwordError: { message: 'account.password.error.missing', reasons: [] } }, 400);
      }
      try {
        // The domain keeps this sign-in (and so the console's token) and ends the others.
        await selfService.changePassword(signed.caller.accountId, current, next, signed.caller.sessionUid, changeContext(ctx, signed.caller.accountId));
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        if (err.code === 'IDENT_CURRENT_PASSWORD_INVALID') {
          return renderConsole(ctx, signed, { passwordError: { message: 'account.password.error.current', reasons: [] } }, 400);
        }
        if (err.code === 'IDENT_PASSWORD_POLICY') {
          return renderConsole(ctx, signed, { passwordError: { message: 'account.password.error.policy', reasons: policyReasonsOf(err) } }, 400);
        }
        if (err.code === 'IDENT_RATE_LIMITED') {
          return renderConsole(ctx, signed, { passwordError: { message: 'account.password.error.rate_limited', reasons: [] } }, 429);
        }
        throw err;
      }
      seeOther(ctx, `${consoleUrl}?done=password`);
    }),
  );

  router.post(
    '/sessions/revoke',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const uid = text(bodyOf(ctx).session);
      if (!uid || uid.length > 128) return renderConsole(ctx, signed, { sessionsError: 'account.sessions.not_found' }, 400);
      try {
        await selfService.revokeSession(signed.caller.accountId, uid, changeContext(ctx, signed.caller.accountId));
      } catch (err) {
        if (!(err instanceof AppError) || err.code !== 'IDENT_SESSION_NOT_FOUND') throw err;
        return renderConsole(ctx, signed, { sessionsError: 'account.sessions.not_found' }, 404);
      }
      if (uid === signed.caller.sessionUid) {
        // The console's own sign-in was that session: its token went with it.
        await sessions.end(ctx);
        return seeOther(ctx, rp.postLogoutRedirectUri);
      }
      seeOther(ctx, `${consoleUrl}?done=revoked`);
    }),
  );

  router.post(
    '/sessions/revoke-all',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      await selfService.logoutAll(signed.caller.accountId, changeContext(ctx, signed.caller.accountId));
      await sessions.end(ctx);
      seeOther(ctx, rp.postLogoutRedirectUri);
    }),
  );

  router.post(
    '/mfa/totp/enroll',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      // Answered with the page itself, never a redirect: the secret must not travel in a URL, and
      // this answer is the only one that shows it (no-store keeps it out of caches).
      const enrollment = await mfa.enrollTotp(signed.caller.accountId);
      await renderConsole(ctx, signed, { enrollment });
    }),
  );

  router.post(
    '/mfa/totp/confirm',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const body = bodyOf(ctx);
      const factorId = text(body.factor);
      // Apps and people write codes as "123 456": spaces are not part of the code.
      const code = text(body.code)?.replace(/\s+/g, '') ?? '';
      if (!factorId || !FACTOR_ID.test(factorId)) return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.expired' }, 400);
      if (!/^\d{6}$/.test(code)) return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.code_format', confirmAgain: factorId }, 400);
      try {
        await mfa.confirmTotp(signed.caller.accountId, factorId, code, signed.caller.sessionUid, changeContext(ctx, signed.caller.accountId));
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        // A wrong code: ask again for the same enrollment (the app holds its secret already).
        if (err.code === 'IDENT_OTP_INVALID') return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.code', confirmAgain: factorId }, 400);
        if (err.code === 'IDENT_OTP_LOCKED') return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.locked' }, 429);
        if (err.code === 'IDENT_MFA_FACTOR_NOT_FOUND') return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.expired' }, 404);
        throw err;
      }
      seeOther(ctx, `${consoleUrl}?done=mfa_totp`);
    }),
  );

  router.post(
    '/mfa/recovery-codes',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      // Like the secret: shown in this answer only.
      const recoveryCodes = await mfa.regenerateRecoveryCodes(signed.caller.accountId, signed.caller.sessionUid, changeContext(ctx, signed.caller.accountId));
      await renderConsole(ctx, signed, { recoveryCodes });
    }),
  );

  router.post(
    '/mfa/remove',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const factorId = text(bodyOf(ctx).factor);
      try {
        if (!factorId || !FACTOR_ID.test(factorId)) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
        await mfa.remove(signed.caller.accountId, factorId, signed.caller.sessionUid, changeContext(ctx, signed.caller.accountId));
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        if (err.code === 'IDENT_MFA_LAST_FACTOR') return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.required' }, 409);
        if (err.code !== 'IDENT_MFA_FACTOR_NOT_FOUND') throw err;
        return renderConsole(ctx, signed, { mfaError: 'account.mfa.error.not_found' }, 404);
      }
      seeOther(ctx, `${consoleUrl}?done=mfa_removed`);
    }),
  );

  codeFactorConsoleRoutes(router, deps.codeFactors, {
    form,
    consoleUrl,
    signedInPost,
    accountIdOf: (signed) => signed.caller.accountId,
    sessionUidOf: (signed) => signed.caller.sessionUid,
    render: (ctx, signed, state, status) => renderConsole(ctx, signed, state, status),
    handle,
    changeContext,
    seeOther,
  });

  /** Signs out of the console and of the provider: RP-initiated logout with our ID token as the hint. */
  router.post('/logout', form, async (ctx) => {
    const config = await rp.configuration();
    const signed = await signedIn(ctx);
    if (!signed) {
      // The console session already lapsed (its token lives an hour) while the provider's may not
      // have: still go to the provider, which asks the user to confirm without our ID token.
      return seeOther(ctx, oidc.buildEndSessionUrl(config, { post_logout_redirect_uri: rp.postLogoutRedirectUri }).href);
    }
    if (!sessions.verifyCsrf(signed.sessionId, bodyOf(ctx).csrf)) return problem(ctx, 'error.csrf', 403);
    await sessions.end(ctx);
    const url = oidc.buildEndSessionUrl(config, {
      id_token_hint: signed.tokens.idToken,
      post_logout_redirect_uri: rp.postLogoutRedirectUri,
    });
    seeOther(ctx, url.href);
  });

  router.get('/signed-out', async (ctx) => {
    renderPage(ctx, 'account-signed-out', { title: 'account.signed_out.title', again: consoleUrl });
  });

  return router;
}
