import type { LocalCommand } from '../command.ts';
import { loadConfig } from '../../config/load.ts';
import { printJson, print } from '../output.ts';

// The database, key store and their native modules are loaded only by these commands, so the
// remote commands start fast and run where none of that is installed or configured.
async function services() {
  const config = loadConfig();
  const [{ createServices }, { createLogger }] = await Promise.all([import('../../services.ts'), import('../../infra/logger.ts')]);
  return createServices(config, createLogger(process.env.LOG_LEVEL ?? 'warn'));
}

export const localCommands: LocalCommand[] = [
  {
    name: 'migrate',
    summary: 'apply pending database migrations',
    async run({ json }) {
      const s = await services();
      await s.close();
      if (json) return printJson({ migrations: 'up to date' });
      print('migrations are up to date');
    },
  },
  {
    name: 'keys rotate',
    summary: 'publish new signing and cookie keys; they sign after KEY_PROPAGATION_SECONDS',
    async run({ json }) {
      const s = await services();
      try {
        await s.keys.ensureKeys();
        const out = await s.keys.rotate();
        if (json) return printJson(out);
        print(
          `new keys published; they sign from ${out.activatesAt.toISOString()}; ` +
            `old signing keys retire at ${out.sigRetiresAt.toISOString()}, old cookie keys at ${out.cookieRetiresAt.toISOString()}`,
        );
      } finally {
        await s.close();
      }
    },
  },
];
