#!/usr/bin/env node
import { ConfigError, loadConfig } from '../config/load.ts';
import { createLogger } from '../infra/logger.ts';
import { createServices } from '../runtime.ts';

const USAGE = `usage: idp <command>

Local commands (use the same settings as the server: DATABASE_URL, DATA_DIR, KEY_ENCRYPTION_KEY...):
  migrate          apply pending database migrations
  keys rotate      publish new signing and cookie keys; they sign after KEY_PROPAGATION_SECONDS
  help             show this text
`;

async function run(argv: string[]): Promise<number> {
  const [command, sub] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  const config = loadConfig();
  const logger = createLogger(process.env.LOG_LEVEL ?? 'warn');
  if (command === 'migrate') {
    const services = await createServices(config, logger);
    await services.close();
    process.stdout.write('migrations are up to date\n');
    return 0;
  }
  if (command === 'keys' && sub === 'rotate') {
    const services = await createServices(config, logger);
    try {
      await services.keys.ensureKeys();
      const out = await services.keys.rotate();
      process.stdout.write(
        `new keys published; they sign from ${out.activatesAt.toISOString()}; ` +
          `old signing keys retire at ${out.sigRetiresAt.toISOString()}, old cookie keys at ${out.cookieRetiresAt.toISOString()}\n`,
      );
    } finally {
      await services.close();
    }
    return 0;
  }
  process.stderr.write(`idp: unknown command "${argv.join(' ')}"\n\n${USAGE}`);
  return 2;
}

run(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`idp: ${err instanceof ConfigError ? err.message : (err as Error).message}\n`);
    process.exit(1);
  },
);
