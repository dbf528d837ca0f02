import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/** What the provider's cookies (the `cookies` package) ask of their signing keys: keygrip's interface. */
export interface CookieSigner {
  sign(data: string): string;
  verify(data: string, digest: string): boolean;
  /** Which key signed `digest` (0: the newest), or -1 when none did. */
  index(data: string, digest: string): number;
}

/**
 * Signs and checks the provider's cookies exactly as keygrip does with these keys (HMAC-SHA1,
 * base64url without padding; the first key signs, every key verifies), so cookies signed before
 * stay valid, but compares with crypto.timingSafeEqual. keygrip compares through tsscmp, which
 * HMACs both values again under a fresh random Buffer key; on Node 24 importing a Buffer key
 * throws and catches inside node:crypto, so each of those HMACs costs about 15 µs and a signed
 * cookie's check about 39 µs against 2 µs here (bench/README.md, "Where a sign-in's time goes").
 * The keys are imported once, as KeyObjects.
 */
export function createCookieSigner(keys: readonly string[]): CookieSigner {
  if (keys.length === 0) throw new Error('no cookie keys');
  const imported: KeyObject[] = keys.map((key) => createSecretKey(Buffer.from(key, 'utf8')));
  const signWith = (key: KeyObject, data: string) => createHmac('sha1', key).update(data).digest('base64url');
  const signer: CookieSigner = {
    sign: (data) => signWith(imported[0]!, data),
    verify: (data, digest) => signer.index(data, digest) > -1,
    index(data, digest) {
      if (typeof digest !== 'string') return -1;
      const presented = Buffer.from(digest);
      for (let i = 0; i < imported.length; i++) {
        const expected = Buffer.from(signWith(imported[i]!, data));
        // The length of a signature is public (27 characters for SHA-1), so telling it apart early leaks nothing.
        if (expected.length === presented.length && timingSafeEqual(expected, presented)) return i;
      }
      return -1;
    },
  };
  return signer;
}
