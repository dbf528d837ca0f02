import { createHmac } from 'node:crypto';
import { createChallenge, randomInt, verifySolution, type Challenge, type Solution } from 'altcha-lib';
import { deriveKey } from 'altcha-lib/algorithms/sha';
import type { EphemeralStore } from './ephemeral/types.ts';

export type CaptchaProviderName = 'altcha' | 'turnstile' | 'hcaptcha' | 'none';

/** What a page needs to render the widget (views/partials/captcha.eta). */
export interface CaptchaWidget {
  provider: CaptchaProviderName;
  scriptUrl?: string;
  /** ALTCHA only: the widget's stylesheet (the CSP build ships its CSS separately). */
  styleUrl?: string;
  siteKey?: string;
  challengeUrl?: string;
}

export interface Captcha {
  readonly provider: CaptchaProviderName;
  /** ALTCHA only: a fresh signed challenge (the JSON the widget and API clients fetch); undefined for the others. */
  challenge(): Promise<Record<string, unknown> | undefined>;
  /**
   * True when the solved payload (ALTCHA base64 string, Turnstile/hCaptcha response token) is
   * valid, unexpired and not used before. Never throws for bad input (returns false); 'none'
   * always true.
   */
  verify(payload: unknown, remoteIp?: string): Promise<boolean>;
  readonly widget: CaptchaWidget;
}

export interface CaptchaOptions {
  provider: CaptchaProviderName;
  /** ALTCHA signing key (derived by the caller from the SecretBox, the same on every instance). */
  hmacKey: string;
  /** Replay protection: a solved ALTCHA challenge is accepted once, across instances. */
  ephemeral: EphemeralStore;
  secretKey?: string;
  siteKey?: string;
  /** Override of the siteverify endpoint (tests point it to a local server). */
  verifyUrl?: string;
  /**
   * ALTCHA difficulty: the secret counter is drawn from [0, maxNumber], so a solver needs
   * maxNumber / 2 SHA-256 evaluations on average.
   */
  maxNumber?: number;
  /** Challenge lifetime. */
  expiresSeconds?: number;
  fetch?: typeof fetch;
}

/** For the config schema: z.enum(CAPTCHA_PROVIDERS). */
export const CAPTCHA_PROVIDERS = ['altcha', 'turnstile', 'hcaptcha', 'none'] as const satisfies readonly CaptchaProviderName[];

// Where the assets router and the API route serve the ALTCHA pieces.
export const ALTCHA_SCRIPT_URL = '/assets/altcha.js';
export const ALTCHA_STYLE_URL = '/assets/altcha.css';
export const ALTCHA_CHALLENGE_URL = '/api/v1/auth/captcha';

const SITEVERIFY = {
  turnstile: 'https://challenges.cloudflare.com/turnstile/v0/siteverify',
  hcaptcha: 'https://api.hcaptcha.com/siteverify',
} as const;
const VENDOR_SCRIPT = {
  turnstile: 'https://challenges.cloudflare.com/turnstile/v0/api.js',
  hcaptcha: 'https://js.hcaptcha.com/1/api.js',
} as const;

// A solved ALTCHA payload is about 800 characters; anything far larger is not ours, so it is
// refused before base64/JSON decoding costs anything.
const MAX_ALTCHA_PAYLOAD = 4096;
// Turnstile documents 2048 characters; hCaptcha tokens are longer but well under this.
const MAX_VENDOR_TOKEN = 8192;
/** How long a siteverify call may take before the token is refused (exported for its test). */
export const SITEVERIFY_TIMEOUT_MS = 5000;
// The replay marker outlives the challenge by this much, so an instance whose clock runs a
// little behind cannot accept a payload whose marker has already expired.
const CLOCK_SKEW_SECONDS = 60;
// Deterministic mode (a secret counter) needs a uint32 counter.
const MAX_COUNTER = 0xffffffff;
// One SHA-256 per attempt, so maxNumber alone sets the work (as in ALTCHA v1). The widget ships a
// worker for it; PBKDF2/scrypt/argon2 would need more workers served (and wasm for the latter two).
const ALTCHA_ALGORITHM = 'SHA-256';

/**
 * CAPTCHA for self-registration. ALTCHA (default) is a self-hosted proof of work: the challenge
 * is signed with our key, so any instance verifies it without shared state except the replay
 * marker. Turnstile and hCaptcha are checked against the vendor's siteverify endpoint.
 */
export function createCaptcha(options: CaptchaOptions): Captcha {
  switch (options.provider) {
    case 'altcha':
      return createAltcha(options);
    case 'turnstile':
    case 'hcaptcha':
      return createVendor(options.provider, options);
    case 'none':
      return {
        provider: 'none',
        widget: { provider: 'none' },
        challenge: async () => undefined,
        verify: async () => true,
      };
    default:
      throw new Error(`unknown captcha provider: ${String(options.provider)}`);
  }
}

function createAltcha(options: CaptchaOptions): Captcha {
  const { ephemeral, maxNumber = 100_000, expiresSeconds = 600 } = options;
  if (typeof options.hmacKey !== 'string' || options.hmacKey.length < 32) {
    throw new Error('captcha: the ALTCHA hmacKey must be at least 32 characters');
  }
  if (!Number.isInteger(maxNumber) || maxNumber < 1 || maxNumber > MAX_COUNTER) {
    throw new Error(`captcha: maxNumber must be an integer from 1 to ${MAX_COUNTER}`);
  }
  if (!Number.isInteger(expiresSeconds) || expiresSeconds < 10) {
    throw new Error('captcha: expiresSeconds must be an integer of at least 10');
  }
  // Two independent secrets from one key: one signs the challenge parameters, the other the
  // derived key (so verification is one HMAC instead of re-deriving).
  const sub = (purpose: string) => createHmac('sha256', options.hmacKey).update(`idp/captcha/altcha/${purpose}`).digest('hex');
  const hmacSignatureSecret = sub('challenge');
  const hmacKeySignatureSecret = sub('key');

  return {
    provider: 'altcha',
    widget: {
      provider: 'altcha',
      scriptUrl: ALTCHA_SCRIPT_URL,
      styleUrl: ALTCHA_STYLE_URL,
      challengeUrl: ALTCHA_CHALLENGE_URL,
    },
    async challenge() {
      // Deterministic mode: the key prefix the client must reproduce comes from a secret random
      // counter, so the expected work is set by maxNumber and the key signature proves a solve.
      const challenge = await createChallenge({
        algorithm: ALTCHA_ALGORITHM,
        cost: 1,
        counter: randomInt(maxNumber, 0),
        deriveKey,
        expiresAt: Math.floor(Date.now() / 1000) + expiresSeconds,
        hmacSignatureSecret,
        hmacKeySignatureSecret,
      });
      return { parameters: challenge.parameters, signature: challenge.signature };
    },
    async verify(payload) {
      const decoded = decodeAltchaPayload(payload);
      if (!decoded) return false;
      try {
        const result = await verifySolution({
          challenge: decoded.challenge,
          solution: decoded.solution,
          deriveKey,
          hmacSignatureSecret,
          hmacKeySignatureSecret,
        });
        if (!result.verified) return false;
      } catch {
        // The library throws on some malformed values (e.g. non-hex fields); that is a "no".
        return false;
      }
      // Only now, with the signature checked, may the payload write to the store: forged
      // payloads cannot fill it. The signature is unique per challenge (random nonce and salt).
      return ephemeral.setIfAbsent(`captcha:used:${decoded.challenge.signature}`, '1', expiresSeconds + CLOCK_SKEW_SECONDS);
    },
  };
}

interface AltchaPayload {
  challenge: Challenge & { signature: string };
  solution: Solution;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The widget's base64(JSON) payload, shape-checked; undefined for anything else. */
function decodeAltchaPayload(payload: unknown): AltchaPayload | undefined {
  if (typeof payload !== 'string' || payload.length === 0 || payload.length > MAX_ALTCHA_PAYLOAD) return undefined;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(payload)) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(payload, 'base64').toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(data) || !isRecord(data.challenge) || !isRecord(data.solution)) return undefined;
  const { challenge, solution } = data;
  const params = challenge.parameters;
  if (!isRecord(params) || typeof challenge.signature !== 'string' || !/^[0-9a-f]{64}$/.test(challenge.signature)) return undefined;
  // Ours always carry an expiry and a key signature; the library would skip a missing expiry.
  if (params.algorithm !== ALTCHA_ALGORITHM || typeof params.expiresAt !== 'number' || typeof params.keySignature !== 'string') return undefined;
  if (typeof solution.counter !== 'number' || typeof solution.derivedKey !== 'string') return undefined;
  return {
    challenge: { parameters: params as unknown as Challenge['parameters'], signature: challenge.signature },
    solution: { counter: solution.counter, derivedKey: solution.derivedKey },
  };
}

function createVendor(provider: 'turnstile' | 'hcaptcha', options: CaptchaOptions): Captcha {
  const { secretKey, siteKey } = options;
  if (!secretKey || !siteKey) throw new Error(`captcha: ${provider} needs a site key and a secret key`);
  const url = options.verifyUrl ?? SITEVERIFY[provider];
  const doFetch = options.fetch ?? fetch;

  return {
    provider,
    widget: { provider, scriptUrl: VENDOR_SCRIPT[provider], siteKey },
    challenge: async () => undefined,
    // The vendors enforce expiry and single use of a token themselves (siteverify answers
    // success: false for a token seen before), so no replay marker is kept here.
    async verify(token, remoteIp) {
      if (typeof token !== 'string' || token.length === 0 || token.length > MAX_VENDOR_TOKEN) return false;
      const form = new URLSearchParams({ secret: secretKey, response: token });
      if (typeof remoteIp === 'string' && remoteIp) form.set('remoteip', remoteIp);
      // hCaptcha recommends sending the site key so a token issued for another site fails.
      if (provider === 'hcaptcha') form.set('sitekey', siteKey);
      try {
        const res = await doFetch(url, {
          method: 'POST',
          body: form,
          headers: { accept: 'application/json' },
          redirect: 'error',
          signal: AbortSignal.timeout(SITEVERIFY_TIMEOUT_MS),
        });
        if (!res.ok) {
          await res.body?.cancel();
          return false;
        }
        const answer: unknown = await res.json();
        return isRecord(answer) && answer.success === true;
      } catch {
        // Unreachable, timed out or not JSON: fail closed. The secret is in the body, never
        // in an error message, so nothing here needs logging by the caller either.
        return false;
      }
    },
  };
}

/**
 * Origins a third-party widget needs in the page's Content-Security-Policy, per directive
 * (from the vendors' CSP documentation). Empty for ALTCHA and none: everything is 'self'.
 */
export function captchaCspSources(widget: CaptchaWidget): { script: string[]; frame: string[]; connect: string[]; style: string[] } {
  switch (widget.provider) {
    case 'turnstile': {
      const origin = ['https://challenges.cloudflare.com'];
      return { script: origin, frame: origin, connect: [], style: [] };
    }
    case 'hcaptcha': {
      const origins = ['https://hcaptcha.com', 'https://*.hcaptcha.com'];
      return { script: origins, frame: origins, connect: origins, style: origins };
    }
    default:
      return { script: [], frame: [], connect: [], style: [] };
  }
}
