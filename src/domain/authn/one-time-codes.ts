import { randomInt } from 'node:crypto';
import { constantTimeEqual, randomToken, type SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import { AppError } from '../errors.ts';

/**
 * Every one-time code and token of the account flows, on the EphemeralStore, keyed (under the
 * store's own prefix) as:
 *   {namespace}:otp:{identifier}        {"h": keyed hash of the code, "n": wrong attempts so far}
 *   {namespace}:otp-link:{tokenhash}    identifier, for link tokens verified without the identifier
 *   {namespace}:lock:{identifier}       after `maxAttempts` wrong tries; refuses typed codes (not links, not sends)
 *   {namespace}:session:{tokenhash}     identifier of a verified step, taken once
 *   {namespace}:cooldown:{identifier}   between two sends
 *   {namespace}:daily:{identifier}      sends in the last 24 h
 * Codes and tokens are never stored, only SecretBox MACs of them, bound to namespace and
 * identifier. Session keys use the token's MAC instead of the token itself (the scheme's
 * `{token}`) so a dump of the store holds nothing usable. Identifiers are used as given: callers
 * normalise them (lower-cased email, E.164 phone) before calling.
 */

export const OTP_NAMESPACES = [
  'verify-email',
  'forgot-password',
  'magic-link',
  'verify-phone',
  'phone-auth',
  'add-phone',
  'add-email',
  'email-otp',
] as const;
export type OtpNamespace = (typeof OTP_NAMESPACES)[number];

/** `numeric`: a 6-digit code typed in; `link`: a 256-bit token carried in a link. */
export type OtpKind = 'numeric' | 'link';

export interface OtpSettings {
  kind: OtpKind;
  /** A numeric code that also comes with a link token: either one verifies, once. */
  withLink?: boolean;
  codeTtlSeconds: number;
  sessionTtlSeconds: number;
  /** Sends per identifier per 24 h. */
  dailyQuota: number;
  cooldownSeconds: number;
  /** The wrong try that reaches this count locks (so 5 means the 5th wrong try locks). */
  maxAttempts: number;
  lockTtlSeconds: number;
}

const MIN = 60;
const HOUR = 3600;
const base = { cooldownSeconds: 60, maxAttempts: 5, lockTtlSeconds: 15 * MIN } as const;

export const OTP_SETTINGS: Readonly<Record<OtpNamespace, OtpSettings>> = {
  'verify-email': { ...base, kind: 'numeric', withLink: true, codeTtlSeconds: 15 * MIN, sessionTtlSeconds: 24 * HOUR, dailyQuota: 10 },
  'forgot-password': { ...base, kind: 'numeric', withLink: true, codeTtlSeconds: 15 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 5 },
  'magic-link': { ...base, kind: 'link', codeTtlSeconds: 15 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 10 },
  // SMS costs money and is slower to abuse-detect: shorter codes' life and tighter quotas.
  'verify-phone': { ...base, kind: 'numeric', codeTtlSeconds: 5 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 5 },
  'phone-auth': { ...base, kind: 'numeric', codeTtlSeconds: 5 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 5 },
  'add-phone': { ...base, kind: 'numeric', codeTtlSeconds: 5 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 5 },
  'add-email': { ...base, kind: 'numeric', codeTtlSeconds: 15 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 10 },
  // The email factor's codes (enrolling it, and the second step of a sign-in): typed, like SMS codes.
  'email-otp': { ...base, kind: 'numeric', codeTtlSeconds: 10 * MIN, sessionTtlSeconds: 1 * HOUR, dailyQuota: 10 },
};

export interface IssuedCode {
  kind: OtpKind;
  /** The 6-digit code, or the link token; sent to the user, never stored. */
  code: string;
  /** With `withLink`: the link token that verifies like the code. */
  link?: string;
  expiresAt: Date;
}

interface OtpRecord {
  h: string;
  /** MAC of the link token of a code issued `withLink`. */
  l?: string;
  n: number;
}

const MAX_IDENTIFIER = 320;
const MAX_PRESENTED = 256;
// Bounds the compare-and-swap loop. Each lost swap means another call's swap won, and a record
// takes at most `maxAttempts` swaps before it is gone, so this is never reached in practice.
const MAX_SWAPS = 64;

export class OneTimeCodes {
  readonly #store: EphemeralStore;
  readonly #box: SecretBox;
  readonly #settings: Record<OtpNamespace, OtpSettings>;

  constructor(store: EphemeralStore, box: SecretBox, overrides: Partial<Record<OtpNamespace, Partial<OtpSettings>>> = {}) {
    this.#store = store;
    this.#box = box;
    this.#settings = Object.fromEntries(
      OTP_NAMESPACES.map((ns) => [ns, { ...OTP_SETTINGS[ns], ...overrides[ns] }]),
    ) as Record<OtpNamespace, OtpSettings>;
  }

  settings(namespace: OtpNamespace): Readonly<OtpSettings> {
    return this.#settings[namespace];
  }

  /**
   * A new code for `identifier`, replacing any earlier one. Refused within the cooldown and over
   * the daily quota. A resend keeps the wrong-attempt count of the code it replaces, so resending
   * does not buy more guesses. Not refused while locked: anyone can lock an address by typing wrong
   * codes, and the owner must still get a mail whose link works (the lock stops typed codes only).
   */
  async issue(namespace: OtpNamespace, identifier: string, opts: { bind?: string; beyondQuota?: boolean } = {}): Promise<IssuedCode> {
    const s = this.#settings[namespace];
    checkIdentifier(identifier);
    // Cooldown before quota, so refused sends do not spend the quota.
    if (!(await this.#store.setIfAbsent(key(namespace, 'cooldown', identifier), '1', s.cooldownSeconds))) {
      throw new AppError('IDENT_OTP_COOLDOWN', undefined, { retryAfterSeconds: s.cooldownSeconds });
    }
    // `beyondQuota`: a request that passed a CAPTCHA (the quota is there against automated sends).
    if ((await this.#store.incr(key(namespace, 'daily', identifier), 24 * HOUR)) > s.dailyQuota && !opts.beyondQuota) {
      throw new AppError('IDENT_OTP_DAILY_QUOTA');
    }

    const code = s.kind === 'link' ? randomToken(32) : String(randomInt(0, 1_000_000)).padStart(6, '0');
    const link = s.kind === 'link' ? code : s.withLink ? randomToken(32) : undefined;
    const otpKey = key(namespace, 'otp', identifier);
    const h = this.#codeHash(namespace, identifier, code);
    const l = link !== undefined && link !== code ? this.#linkTokenHash(namespace, identifier, link) : undefined;
    for (let i = 0; ; i++) {
      if (i >= MAX_SWAPS) throw new Error('one-time code: too much contention');
      const raw = await this.#store.get(otpKey);
      const n = parseRecord(raw)?.n ?? 0;
      const next: OtpRecord = l ? { h, l, n } : { h, n };
      if (await this.#store.compareAndSwap(otpKey, raw, JSON.stringify(next), s.codeTtlSeconds)) break;
    }
    if (link !== undefined) {
      await this.#store.set(key(namespace, 'otp-link', this.#linkHash(namespace, link, opts.bind)), identifier, s.codeTtlSeconds);
    }
    const expiresAt = new Date(Date.now() + s.codeTtlSeconds * 1000);
    return link !== undefined && link !== code ? { kind: s.kind, code, link, expiresAt } : { kind: s.kind, code, expiresAt };
  }

  /**
   * Lifts the cooldown of a send that did not go out (an SMS provider that failed), so the user
   * may ask again at once. The daily quota stays spent: it still bounds how often one asks.
   */
  async releaseCooldown(namespace: OtpNamespace, identifier: string): Promise<void> {
    checkIdentifier(identifier);
    await this.#store.del(key(namespace, 'cooldown', identifier));
  }

  /**
   * Checks `code` for `identifier` and, once, answers a session token for the verified step. Wrong,
   * expired and absent codes all fail with IDENT_OTP_INVALID; the wrong try that reaches
   * `maxAttempts` deletes the code, locks typed codes of the identifier in this namespace and fails
   * with IDENT_OTP_LOCKED, as does every typed code while locked. The lock bounds guessing of the
   * 6-digit codes only: links (256-bit tokens) still verify, so a stranger who locks an address
   * does not lock its owner out.
   */
  async verify(namespace: OtpNamespace, identifier: string, code: string): Promise<string> {
    checkIdentifier(identifier);
    return this.#verify(namespace, identifier, code, 'code');
  }

  /**
   * Verifies a link token alone (the link carries no identifier). Link design: the token's MAC
   * maps to the identifier at `{namespace}:otp-link:{tokenhash}`, and the token itself is checked
   * against `{namespace}:otp:{identifier}` like a code. So the otp record stays the one source of
   * truth: a link and a code for one identifier share the single use (whichever wins the swap
   * consumes it), and a resend invalidates the older link. The lock does not stop links. Unknown tokens are not counted
   * as attempts (with 256 bits there is no identifier to guess against, and counting them would
   * let anyone lock anyone); a stale but once-issued link fails without counting either.
   * A link issued with `bind` (say, the pending authorization it completes) verifies only with the
   * same `bind`.
   */
  async verifyLink(namespace: OtpNamespace, token: string, bind?: string): Promise<{ identifier: string; session: string }> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_PRESENTED) throw new AppError('IDENT_OTP_INVALID');
    const linkHash = this.#linkHash(namespace, token, bind);
    const identifier = await this.#store.take(key(namespace, 'otp-link', linkHash));
    if (identifier === undefined) throw new AppError('IDENT_OTP_INVALID');
    const session = await this.#verify(namespace, identifier, token, 'link');
    // Remembered for the link's lifetime, so a second click can be told what happened (usedLinkOwner).
    await this.#store.set(key(namespace, 'otp-link-used', linkHash), identifier, this.#settings[namespace].codeTtlSeconds);
    return { identifier, session };
  }

  /** Whose a link token was, once it has been used (within the link's lifetime); undefined otherwise. */
  async usedLinkOwner(namespace: OtpNamespace, token: string, bind?: string): Promise<string | undefined> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_PRESENTED) return undefined;
    return this.#store.get(key(namespace, 'otp-link-used', this.#linkHash(namespace, token, bind)));
  }

  /** Whose a link token is, without using it (to check what it will be used for first); undefined when unknown. */
  async peekLink(namespace: OtpNamespace, token: string, bind?: string): Promise<string | undefined> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_PRESENTED) return undefined;
    return this.#store.get(key(namespace, 'otp-link', this.#linkHash(namespace, token, bind)));
  }

  /**
   * A verified step for `identifier` opened by another proof of the same thing (say, a
   * verification link proving the mailbox opens the set-password step); taken once like any other.
   */
  async openSession(namespace: OtpNamespace, identifier: string): Promise<string> {
    checkIdentifier(identifier);
    const session = randomToken(32);
    await this.#store.set(key(namespace, 'session', this.#sessionHash(namespace, session)), identifier, this.#settings[namespace].sessionTtlSeconds);
    return session;
  }

  /** The identifier of a verified step without using it up (a form shown again after a mistake). */
  async peekSession(namespace: OtpNamespace, token: string): Promise<string | undefined> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_PRESENTED) return undefined;
    return this.#store.get(key(namespace, 'session', this.#sessionHash(namespace, token)));
  }

  /** The identifier of a verified step, once; undefined for unknown, expired or used tokens. */
  async takeSession(namespace: OtpNamespace, token: string): Promise<string | undefined> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_PRESENTED) return undefined;
    return this.#store.take(key(namespace, 'session', this.#sessionHash(namespace, token)));
  }

  async #verify(namespace: OtpNamespace, identifier: string, code: string, via: 'code' | 'link'): Promise<string> {
    const s = this.#settings[namespace];
    const countFailure = via === 'code';
    if (via === 'code' && (await this.#store.get(key(namespace, 'lock', identifier))) !== undefined) throw new AppError('IDENT_OTP_LOCKED');
    const valid = typeof code === 'string' && code.length <= MAX_PRESENTED;
    const presented = !valid ? '' : via === 'link' && s.withLink ? this.#linkTokenHash(namespace, identifier, code) : this.#codeHash(namespace, identifier, code);
    const otpKey = key(namespace, 'otp', identifier);

    // Compare, then swap against the exact record compared: of concurrent tries on one record only
    // one swap wins per version, so two right tries give one success and every wrong try that is
    // answered is either counted or met a record already gone.
    for (let i = 0; i < MAX_SWAPS; i++) {
      const raw = await this.#store.get(otpKey);
      const rec = parseRecord(raw);
      // Compare even without a record, so absent and wrong take the same path.
      const expected = via === 'link' && s.withLink ? rec?.l : rec?.h;
      const match = constantTimeEqual(presented, expected ?? DUMMY_HASH) && expected !== undefined;
      if (match) {
        if (!(await this.#store.compareAndSwap(otpKey, raw, undefined))) continue;
        const session = randomToken(32);
        await this.#store.set(key(namespace, 'session', this.#sessionHash(namespace, session)), identifier, s.sessionTtlSeconds);
        return session;
      }
      if (rec === undefined || !countFailure) throw new AppError('IDENT_OTP_INVALID');
      const n = rec.n + 1;
      if (n >= s.maxAttempts) {
        if (!(await this.#store.compareAndSwap(otpKey, raw, undefined))) continue;
        await this.#store.set(key(namespace, 'lock', identifier), '1', s.lockTtlSeconds);
        throw new AppError('IDENT_OTP_LOCKED');
      }
      if (await this.#store.compareAndSwap(otpKey, raw, JSON.stringify({ ...rec, n } satisfies OtpRecord))) {
        throw new AppError('IDENT_OTP_INVALID', undefined, { attemptsLeft: s.maxAttempts - n });
      }
    }
    throw new AppError('IDENT_OTP_INVALID');
  }

  #codeHash(namespace: OtpNamespace, identifier: string, code: string): string {
    return this.#box.mac(`otp/${namespace}/${identifier}`, code).toString('base64url');
  }
  #linkHash(namespace: OtpNamespace, token: string, bind = ''): string {
    return this.#box.mac(`otp-link/${namespace}/${bind}`, token).toString('base64url');
  }
  #linkTokenHash(namespace: OtpNamespace, identifier: string, token: string): string {
    return this.#box.mac(`otp-link-token/${namespace}/${identifier}`, token).toString('base64url');
  }
  #sessionHash(namespace: OtpNamespace, token: string): string {
    return this.#box.mac(`otp-session/${namespace}`, token).toString('base64url');
  }
}

const DUMMY_HASH = 'A'.repeat(43);

function key(namespace: OtpNamespace, part: 'otp' | 'otp-link' | 'otp-link-used' | 'lock' | 'session' | 'cooldown' | 'daily', id: string): string {
  return `${namespace}:${part}:${id}`;
}

function checkIdentifier(identifier: string): void {
  if (typeof identifier !== 'string' || identifier.length === 0 || identifier.length > MAX_IDENTIFIER) {
    throw new AppError('IDENT_VALIDATION', 'invalid identifier');
  }
}

function parseRecord(raw: string | undefined): OtpRecord | undefined {
  if (raw === undefined) return undefined;
  try {
    const v = JSON.parse(raw) as Partial<OtpRecord>;
    if (typeof v.h !== 'string' || typeof v.n !== 'number') return undefined;
    return typeof v.l === 'string' ? { h: v.h, l: v.l, n: v.n } : { h: v.h, n: v.n };
  } catch {
    return undefined;
  }
}
