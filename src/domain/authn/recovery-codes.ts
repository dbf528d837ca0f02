import { randomInt } from 'node:crypto';
import type { SecretBox } from '../../infra/crypto.ts';

/**
 * Recovery codes: a set of single-use codes shown once, for when the authenticator is lost. Each is
 * 10 characters of Crockford's base32 (50 bits), shown as `xxxxx-xxxxx`; typed input is forgiven
 * case, spaces, dashes and the look-alikes o/i/l. Only keyed digests (SecretBox.digest, bound to the
 * user) are stored.
 */
export const RECOVERY_CODE_COUNT = 10;
const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const LENGTH = 10;

export function newRecoveryCodes(count = RECOVERY_CODE_COUNT): string[] {
  const codes = new Set<string>();
  while (codes.size < count) {
    let raw = '';
    for (let i = 0; i < LENGTH; i++) raw += ALPHABET[randomInt(ALPHABET.length)];
    codes.add(`${raw.slice(0, 5)}-${raw.slice(5)}`);
  }
  return [...codes];
}

/** The canonical form of a typed code, or undefined when it cannot be one. */
export function normaliseRecoveryCode(input: string): string | undefined {
  if (typeof input !== 'string' || input.length > 64) return undefined;
  const s = input.toLowerCase().replace(/[\s-]/g, '').replace(/o/g, '0').replace(/[il]/g, '1');
  if (s.length !== LENGTH) return undefined;
  for (const c of s) if (!ALPHABET.includes(c)) return undefined;
  return s;
}

/** The stored digest of a code of `userId`'s (a code of one user is nothing for another). */
export function recoveryCodeDigest(box: SecretBox, userId: string, code: string): string {
  return box.digest(code, `mfa-recovery/v1/${userId}`);
}
