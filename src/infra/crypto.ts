import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';

/**
 * Envelope encryption for secrets at rest (private keys, raw client secrets), AES-256-GCM under a
 * sub-key derived from KEY_ENCRYPTION_KEY. The stored form is "v1.<iv>.<tag>.<ciphertext>".
 */
export class SecretBox {
  readonly #encKey: Buffer;
  // A KeyObject, not a Buffer: createHmac imports a Buffer key on every call (~4x slower), and
  // the client-secret digest runs on every token request.
  readonly #macKey: KeyObject;

  constructor(keyEncryptionKey: Buffer) {
    if (keyEncryptionKey.length < 32) throw new Error('key encryption key must be at least 32 bytes');
    this.#encKey = Buffer.from(hkdfSync('sha256', keyEncryptionKey, Buffer.alloc(0), 'idp/encrypt/v1', 32));
    this.#macKey = createSecretKey(Buffer.from(hkdfSync('sha256', keyEncryptionKey, Buffer.alloc(0), 'idp/mac/v1', 32)));
  }

  encrypt(plaintext: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#encKey, iv);
    cipher.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
  }

  decrypt(sealed: string, aad: string): string {
    const [v, iv, tag, ct] = sealed.split('.');
    if (v !== 'v1' || !iv || !tag || ct === undefined) throw new Error('unrecognised sealed secret');
    const decipher = createDecipheriv('aes-256-gcm', this.#encKey, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
  }

  /** Keyed digest for high-entropy secrets: checking one costs microseconds, a dump reveals nothing. */
  digest(value: string, purpose: string): string {
    return createHmac('sha256', this.#macKey).update(purpose).update('\0').update(value).digest('base64url');
  }

  /** HMAC-derived value for purposes such as CSRF tokens. */
  mac(purpose: string, value: string): Buffer {
    return createHmac('sha256', this.#macKey).update(`${purpose}\0${value}`).digest();
  }
}

/**
 * Compares in time independent of where the inputs differ. Unequal lengths are compared against
 * the input itself so the work is the same; only the (public) length can show. Used for digests
 * and MACs, whose length is fixed anyway.
 */
export function constantTimeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const ba = Buffer.isBuffer(a) ? a : Buffer.from(a);
  const bb = Buffer.isBuffer(b) ? b : Buffer.from(b);
  if (ba.length !== bb.length) {
    timingSafeEqual(ba, ba);
    return false;
  }
  return timingSafeEqual(ba, bb);
}

export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
