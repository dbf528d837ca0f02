import { generateSecret, generateURI, verify } from 'otplib';
import { lazyModule } from '../../infra/lazy-module.ts';

/** The QR encoder (with its PNG writer), loaded when someone first enrolls an app. */
const loadQrCode = lazyModule(async () => (await import('qrcode')).default);

/**
 * RFC 6238 time-based codes as every authenticator app makes them (SHA-1, 6 digits, 30 s), through
 * otplib v13. Pure functions: the factor store, locks and replay records are in mfa.ts.
 */
export const TOTP_PERIOD_SECONDS = 30;
/** A code is accepted for its own step and one step either side (clock drift of the phone). */
export const TOTP_DRIFT_STEPS = 1;
const CODE = /^\d{6}$/;

/** A new random secret: 20 bytes (160 bits, RFC 4226's recommendation), base32 as apps expect. */
export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

/**
 * The provisioning URI (`otpauth://totp/<issuer>:<label>?secret=...&issuer=...`). The issuer is
 * a display name: a colon would split the label, so it is replaced.
 */
export function otpauthUri(issuer: string, label: string, secret: string): string {
  return generateURI({ issuer: issuer.replaceAll(':', ' '), label: label.replaceAll(':', ' '), secret, period: TOTP_PERIOD_SECONDS, digits: 6, algorithm: 'sha1' });
}

/** The provisioning URI as a QR code, a `data:image/png;base64,...` URL. */
export async function qrCodeDataUrl(uri: string): Promise<string> {
  return (await loadQrCode()).toDataURL(uri, { errorCorrectionLevel: 'M', margin: 2, width: 240 });
}

/**
 * The time step `code` belongs to when it is the secret's code for now or one step either side,
 * else undefined. otplib compares in constant time; anything that is not 6 digits is refused
 * before it (its shape is not a secret).
 */
export async function totpStep(secret: string, code: string, epochSeconds = Math.floor(Date.now() / 1000)): Promise<number | undefined> {
  if (typeof code !== 'string' || !CODE.test(code)) return undefined;
  const result = await verify({
    secret,
    token: code,
    epoch: epochSeconds,
    period: TOTP_PERIOD_SECONDS,
    epochTolerance: TOTP_DRIFT_STEPS * TOTP_PERIOD_SECONDS,
  });
  // The functional verify's answer covers HOTP too; a TOTP match carries its time step.
  return result.valid && 'timeStep' in result ? result.timeStep : undefined;
}

/** A base32 secret in groups of four, for typing into an app by hand. */
export const groupSecret = (secret: string): string => secret.match(/.{1,4}/g)!.join(' ');
