/**
 * The argon2 bound's probe for the sign-in scenario (bench/run.ts): a process of its own, pinned to
 * the server's CPU by its parent, that verifies a password at the server's default argon2id cost
 * when asked (an IPC message: how many) and answers each verification's milliseconds. A process of
 * its own, so neither the load generator's garbage collection nor its other threads share the
 * core while it measures.
 */
import argon2 from 'argon2';
import { configSchema } from '../src/config/schema.ts';

const defaults = configSchema.parse({});
const password = 'correct horse battery staple';
const hash = await argon2.hash(password, {
  type: argon2.argon2id,
  memoryCost: defaults.ARGON2_MEMORY_KIB,
  timeCost: defaults.ARGON2_ITERATIONS,
  parallelism: defaults.ARGON2_PARALLELISM,
});
// The first verifications warm the pool thread and its buffer.
for (let i = 0; i < 2; i++) await argon2.verify(hash, password);

process.on('message', (n: unknown) => {
  void (async () => {
    const samples: number[] = [];
    for (let i = 0; i < Number(n); i++) {
      const t0 = performance.now();
      if (!(await argon2.verify(hash, password))) throw new Error('argon2 verify failed');
      samples.push(performance.now() - t0);
    }
    process.send!(samples);
  })();
});
process.on('disconnect', () => process.exit(0));
process.send!('ready');
