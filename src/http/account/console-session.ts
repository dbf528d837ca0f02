import type { Context } from 'koa';
import { constantTimeEqual, randomToken, type SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import { ownCookieName } from '../cookies.ts';

/** The console's own session: which browser holds which tokens (`__Host-` prefixed with an https issuer). */
export const SESSION_COOKIE = 'idp_account';
/** A sign-in in progress: its state, nonce and PKCE verifier, sealed (encrypted and authenticated). */
export const SIGNIN_COOKIE = 'idp_account_signin';
/** Time allowed between leaving for the login page and coming back to /account/callback. */
export const SIGNIN_TTL_SECONDS = 600;

/** What a console session holds: the tokens of the account-console client for this browser. */
export interface ConsoleTokens {
  accessToken: string;
  idToken: string;
  /** Epoch milliseconds when the access token expires. */
  expiresAt: number;
}

/** The checks of one authorization request, needed to redeem its response. */
export interface SignInChecks {
  state: string;
  nonce: string;
  verifier: string;
}

// A 256-bit id from randomToken(32): 43 base64url characters. Anything else is not ours.
const ID = /^[A-Za-z0-9_-]{43}$/;
// A SecretBox envelope (v1.<iv>.<tag>.<ciphertext>) of the sign-in checks: a few hundred characters.
const SEALED = /^v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const SIGNIN_AAD = 'account-console:signin';

/**
 * Console sessions, kept in the shared ephemeral store so that any instance can serve the next
 * request. The cookie holds only a random id; the store is keyed by its MAC (a dump of the store
 * gives no usable cookie) and holds the tokens encrypted, bound to that key.
 *
 * A sign-in in progress stores nothing on the server: its checks travel in a sealed cookie (any
 * instance can open it, nobody else can read or forge it), so anonymous visits to /account cost
 * no storage. Its one-time use comes from the authorization code, which is redeemable once.
 */
export function createConsoleSessions(ephemeral: EphemeralStore, box: SecretBox, issuer: string) {
  const sessionCookie = ownCookieName(issuer, SESSION_COOKIE);
  const signinCookie = ownCookieName(issuer, SIGNIN_COOKIE);
  const keyOf = (purpose: 'session', id: string) => `account-console:${box.mac(`account-console:${purpose}`, id).toString('base64url')}`;

  const cookieOptions = (ctx: Context, maxAgeMs?: number) => ({
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: ctx.secure,
    // Path=/ (not /account) so that with https the cookies can take the __Host- prefix.
    path: '/',
    // The value is a random lookup id, not a claim: signing it would add nothing.
    signed: false,
    overwrite: true,
    ...(maxAgeMs ? { maxAge: maxAgeMs } : {}),
  });

  const cookieId = (ctx: Context, name: string): string | undefined => {
    const value = ctx.cookies.get(name, { signed: false });
    return value && ID.test(value) ? value : undefined;
  };

  async function readSealed<T>(key: string, sealed: string | undefined): Promise<T | undefined> {
    if (!sealed) return undefined;
    try {
      return JSON.parse(box.decrypt(sealed, key)) as T;
    } catch {
      // Unreadable (another key, tampering): as good as absent.
      return undefined;
    }
  }

  return {
    /** Starts a sign-in: the checks go to the browser, sealed, with their deadline inside. */
    beginSignIn(ctx: Context, checks: SignInChecks): void {
      const sealed = box.encrypt(JSON.stringify({ ...checks, expiresAt: Date.now() + SIGNIN_TTL_SECONDS * 1000 }), SIGNIN_AAD);
      ctx.cookies.set(signinCookie, sealed, cookieOptions(ctx, SIGNIN_TTL_SECONDS * 1000));
    },

    /** The checks of this browser's pending sign-in (the cookie is cleared), if still in time. */
    async takeSignIn(ctx: Context): Promise<SignInChecks | undefined> {
      const sealed = ctx.cookies.get(signinCookie, { signed: false });
      ctx.cookies.set(signinCookie, null, cookieOptions(ctx));
      if (!sealed || sealed.length > 1024 || !SEALED.test(sealed)) return undefined;
      const checks = await readSealed<SignInChecks & { expiresAt: number }>(SIGNIN_AAD, sealed);
      if (!checks || !(checks.expiresAt > Date.now())) return undefined;
      if (![checks.state, checks.nonce, checks.verifier].every((v) => typeof v === 'string')) return undefined;
      return { state: checks.state, nonce: checks.nonce, verifier: checks.verifier };
    },

    /**
     * A new console session for freshly issued tokens; it lives as long as the access token. The
     * id is always new (a session id planted before sign-in is never promoted).
     */
    async create(ctx: Context, tokens: ConsoleTokens): Promise<void> {
      const previous = cookieId(ctx, sessionCookie);
      if (previous) await ephemeral.del(keyOf('session', previous));
      const ttl = Math.floor((tokens.expiresAt - Date.now()) / 1000);
      if (ttl <= 0) return;
      const id = randomToken(32);
      const key = keyOf('session', id);
      // A cache record: losing it signs the console out, which is safe.
      await ephemeral.set(key, box.encrypt(JSON.stringify(tokens), key), ttl, { evictable: true });
      ctx.cookies.set(sessionCookie, id, cookieOptions(ctx));
    },

    /** This browser's console session, if its cookie names a stored, unexpired one. */
    async read(ctx: Context): Promise<{ id: string; tokens: ConsoleTokens } | undefined> {
      const id = cookieId(ctx, sessionCookie);
      if (!id) return undefined;
      const key = keyOf('session', id);
      const tokens = await readSealed<ConsoleTokens>(key, await ephemeral.get(key));
      if (!tokens || typeof tokens.accessToken !== 'string' || !(tokens.expiresAt > Date.now())) return undefined;
      return { id, tokens };
    },

    /** Forgets the console session (store and cookie). */
    async end(ctx: Context): Promise<void> {
      const id = cookieId(ctx, sessionCookie);
      if (id) await ephemeral.del(keyOf('session', id));
      ctx.cookies.set(sessionCookie, null, cookieOptions(ctx));
    },

    /** The CSRF token of a console session's forms: an HMAC of its id. */
    csrfToken(sessionId: string): string {
      return box.mac('csrf:account-console', sessionId).toString('base64url');
    },

    verifyCsrf(sessionId: string, token: unknown): boolean {
      return typeof token === 'string' && constantTimeEqual(box.mac('csrf:account-console', sessionId).toString('base64url'), token);
    },
  };
}

export type ConsoleSessions = ReturnType<typeof createConsoleSessions>;
