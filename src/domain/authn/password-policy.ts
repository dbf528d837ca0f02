import { createHash } from 'node:crypto';
import { AppError } from '../errors.ts';
import type { UserRow } from '../../repos/users.ts';
import { lazyModule } from '../../infra/lazy-module.ts';

export type PasswordPolicyReason = 'too_short' | 'too_long' | 'too_weak' | 'breached';

export type PasswordPolicyResult =
  | { ok: true }
  | { ok: false; reasons: PasswordPolicyReason[]; suggestions: string[] };

/** The part of a pino logger the policy uses. */
export interface PolicyLogger {
  warn(obj: object, msg: string): void;
}

export interface PasswordPolicyOptions {
  /** Minimum length in Unicode code points (PASSWORD_MIN_LENGTH). */
  minLength: number;
  /** Minimum zxcvbn score, 0 to 4 (PASSWORD_MIN_SCORE). */
  minScore: number;
  /** Maximum length in code points; longer passwords are refused before any analysis. */
  maxLength?: number;
  /** Base URL of a Have I Been Pwned compatible range API (HIBP_RANGE_URL); unset: no breach check. */
  breachedRangeUrl?: string;
  fetch?: typeof globalThis.fetch;
  /** Time allowed for the range lookup; past it the check fails open. */
  timeoutMs?: number;
  logger?: PolicyLogger;
}

export const MAX_PASSWORD_LENGTH = 1024;

/**
 * The strength estimator, built on the first password check rather than at boot: its dictionaries
 * hold ~30 MB of heap (ranked word lists) that a process which never sets a password (a token
 * server, the sign-in path) should not carry, and ranking them takes ~0.2 s, once.
 * The Levenshtein option is left off: it costs ~200 ms of synchronous CPU per check.
 */
const loadEstimator = lazyModule(async () => {
  const [{ ZxcvbnFactory }, common, en] = await Promise.all([
    import('@zxcvbn-ts/core'),
    import('@zxcvbn-ts/language-common'),
    import('@zxcvbn-ts/language-en'),
  ]);
  return new ZxcvbnFactory({
    dictionary: { ...common.dictionary, ...en.dictionary },
    graphs: common.adjacencyGraphs,
    translations: en.translations,
    // Only the first 64 characters are analysed: the check is synchronous and zxcvbn's repeat
    // matching grows fast with length (a long repeated pattern takes ~0.3 s at 64 characters,
    // ~0.6 s at 128). A password that is strong within its first 64 characters is strong.
    maxLength: 64,
  });
});

/**
 * Words from the user's own data (email, names) that should not carry a password: each input
 * whole, an email's local part, each of these with separators removed, and every word of three or
 * more letters or digits in them.
 */
function expandUserInputs(inputs: readonly string[]): string[] {
  const words = new Set<string>();
  for (const raw of inputs) {
    const input = raw.trim().toLowerCase();
    if (!input) continue;
    const at = input.lastIndexOf('@');
    const local = at > 0 ? input.slice(0, at) : undefined;
    for (const text of local ? [input, local] : [input]) {
      words.add(text);
      // "ada.lovelace" also as "adalovelace", "ada" and "lovelace".
      const parts = text.split(/[^\p{L}\p{N}]+/u).filter(Boolean);
      if (parts.length > 1) words.add(parts.join(''));
      for (const word of parts) if (word.length >= 3) words.add(word);
    }
  }
  return [...words];
}

/**
 * The rules a new password must meet (NIST SP 800-63B style): a length range, a zxcvbn strength
 * score with the user's own data penalised, and optionally no appearance in a breach corpus,
 * looked up by k-anonymity (only the first 5 hex characters of the SHA-1 leave the process).
 */
export function createPasswordPolicy(options: PasswordPolicyOptions) {
  const { minLength, minScore, logger } = options;
  const maxLength = options.maxLength ?? MAX_PASSWORD_LENGTH;
  const rangeUrl = options.breachedRangeUrl?.replace(/\/+$/, '');
  const fetchFn = options.fetch ?? globalThis.fetch;
  const timeoutMs = options.timeoutMs ?? 3000;

  /** true: found in the corpus; false: not found, or the lookup failed (fail open). */
  async function isBreached(password: string): Promise<boolean> {
    if (!rangeUrl) return false;
    const digest = createHash('sha1').update(password, 'utf8').digest('hex').toUpperCase();
    const prefix = digest.slice(0, 5);
    const suffix = digest.slice(5);
    try {
      const res = await fetchFn(`${rangeUrl}/${prefix}`, {
        headers: { 'Add-Padding': 'true', 'User-Agent': 'idp-password-policy', Accept: 'text/plain' },
        signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) {
        await res.body?.cancel();
        throw new Error(`range lookup answered HTTP ${res.status}`);
      }
      const body = await res.text();
      for (const line of body.split('\n')) {
        const [lineSuffix, count] = line.trim().split(':');
        if (lineSuffix?.toUpperCase() === suffix && Number.parseInt(count ?? '', 10) > 0) return true;
      }
      return false;
    } catch (err) {
      // Never the password, its digest or the prefix: only why the lookup failed.
      // fetch wraps network errors ("fetch failed"); the cause says what happened (ECONNREFUSED, ...).
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : undefined;
      const reason = err instanceof Error ? err.message : String(err);
      logger?.warn({ reason, cause }, 'breached password check failed; allowing the password');
      return false;
    }
  }

  return {
    minLength,
    maxLength,
    async check(password: string, userInputs: string[] = []): Promise<PasswordPolicyResult> {
      const length = [...password].length;
      if (length > maxLength) {
        return { ok: false, reasons: ['too_long'], suggestions: [`Use at most ${maxLength} characters.`] };
      }
      const reasons: PasswordPolicyReason[] = [];
      const suggestions: string[] = [];
      if (length < minLength) {
        reasons.push('too_short');
        suggestions.push(`Use at least ${minLength} characters.`);
      }
      const strength = (await loadEstimator()).check(password, expandUserInputs(userInputs));
      if (strength.score < minScore) {
        reasons.push('too_weak');
        if (strength.feedback.warning) suggestions.push(strength.feedback.warning);
        suggestions.push(...strength.feedback.suggestions);
        if (!strength.feedback.suggestions.length) suggestions.push('Add more words that are less common.');
      }
      // A password already refused here costs no outbound request.
      if (!reasons.length && (await isBreached(password))) {
        reasons.push('breached');
        suggestions.push('This password has appeared in a data breach; choose a different one.');
      }
      return reasons.length ? { ok: false, reasons, suggestions: [...new Set(suggestions)] } : { ok: true };
    },
  };
}

export type PasswordPolicy = ReturnType<typeof createPasswordPolicy>;

const REASON_WORDS: Record<PasswordPolicyReason, string> = {
  too_short: 'too short',
  too_long: 'too long',
  too_weak: 'too easy to guess',
  breached: 'known from a data breach',
};

/**
 * The refusal of a password: the reasons in its message (what an API or CLI user reads) and as
 * codes in its detail (what the pages translate and the API envelope carries).
 */
export function passwordPolicyError(verdict: { reasons: PasswordPolicyReason[]; suggestions: string[] }): AppError {
  const why = verdict.reasons.map((r) => REASON_WORDS[r]).join(' and ');
  const message = `the password is ${why}${verdict.suggestions.length ? `: ${verdict.suggestions.join(' ')}` : ''}`;
  return new AppError('IDENT_PASSWORD_POLICY', message, { reasons: verdict.reasons, suggestions: verdict.suggestions });
}

/** A new password is checked against the rules with the user's own words penalised. */
export async function assertPasswordAllowed(policy: PasswordPolicy, password: string, user: Pick<UserRow, 'email' | 'given_name' | 'family_name'>) {
  const verdict = await policy.check(password, [user.email, user.given_name ?? '', user.family_name ?? '']);
  if (!verdict.ok) throw passwordPolicyError(verdict);
}
