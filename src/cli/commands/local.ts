import type { LocalCommand } from '../command.ts';
import { loadConfig } from '../../config/load.ts';
import type { DataDirOpener } from '../../infra/data-dir-lock.ts';
import { printJson, print } from '../output.ts';

// The database, key store and their native modules are loaded only by these commands, so the
// remote commands start fast and run where none of that is installed or configured.
// On the embedded store a local command opens the server's files itself: it refuses while a
// server holds them (a running server would not see its writes) and never creates a new store.
async function services(command: string, whileInUse: string) {
  const config = loadConfig();
  const [{ createServices }, { createLogger }] = await Promise.all([import('../../services.ts'), import('../../infra/logger.ts')]);
  const opener: DataDirOpener = { holder: `idp ${command}`, whileInUse, create: false };
  return createServices(config, createLogger(process.env.LOG_LEVEL ?? 'warn'), opener);
}

export const localCommands: LocalCommand[] = [
  {
    name: 'migrate',
    summary: 'apply pending database migrations',
    async run({ json }) {
      const s = await services('migrate', 'it applied pending migrations when it started; to run idp migrate, stop it first');
      await s.close();
      if (json) return printJson({ migrations: 'up to date' });
      print('migrations are up to date');
    },
  },
  {
    name: 'keys rotate',
    summary: 'publish new signing and cookie keys; they sign after KEY_PROPAGATION_SECONDS',
    async run({ json }) {
      // The admin API has no key rotation route: on the embedded store the server must be stopped.
      const s = await services('keys rotate', 'stop the server, run idp keys rotate, then start it again (the admin API has no key rotation route)');
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
