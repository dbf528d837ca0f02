import argon2 from 'argon2';

export interface Argon2Cost {
  memoryCost: number;
  timeCost: number;
  parallelism: number;
}

/** argon2id hashing with the configured cost; verify reports when a stored hash is due a rehash. */
export function createPasswordHasher(cost: Argon2Cost) {
  const options = { type: argon2.argon2id as 2, ...cost };
  // How a hash made now begins (PHC string; v=19 is argon2 1.3, the library's version). A stored
  // hash that begins so needs no rehash; argon2.needsRehash, which parses the whole string again
  // after verify did, is asked only about the others (older costs, other variants).
  const currentPrefix = `$argon2id$v=19$m=${cost.memoryCost},t=${cost.timeCost},p=${cost.parallelism}$`;
  // Verified against unknown emails so a miss costs the same time as a wrong password.
  const dummy = argon2.hash('not-a-real-password-' + Math.random(), options);

  return {
    hash(password: string): Promise<string> {
      return argon2.hash(password, options);
    },
    async verify(hash: string | null, password: string): Promise<{ ok: boolean; needsRehash: boolean }> {
      const stored = hash ?? (await dummy);
      let ok = false;
      try {
        ok = await argon2.verify(stored, password);
      } catch {
        ok = false;
      }
      ok = ok && hash !== null;
      return { ok, needsRehash: ok && !stored.startsWith(currentPrefix) && argon2.needsRehash(stored, options) };
    },
  };
}

export type PasswordHasher = ReturnType<typeof createPasswordHasher>;
