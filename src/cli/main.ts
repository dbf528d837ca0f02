#!/usr/bin/env node
import { AdminApi, resolveConnection } from './api.ts';
import { parseCommandLine } from './args.ts';
import { commands } from './commands/index.ts';
import { CliError } from './errors.ts';
import { packageVersion } from './version.ts';

// The idp command: local commands on the server's store, remote ones over the admin API.

async function run(argv: string[]): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V' || argv[0] === 'version')) {
    process.stdout.write(`idp ${packageVersion()} (Node ${process.version})\n`);
    return 0;
  }
  const parsed = parseCommandLine(argv, commands);
  if (parsed.kind === 'help') {
    (parsed.exitCode === 0 ? process.stdout : process.stderr).write(parsed.text);
    return parsed.exitCode;
  }
  const { command, args, json } = parsed;
  // Only remote commands need credentials; local ones must work without them.
  if (command.scopes) {
    const connection = resolveConnection(args);
    // Acting in another tenant takes a platform token (one with an iam.tenants:* scope); a tenant's
    // own client naming its own tenant does without (the server drops what it does not hold).
    const ifHeld = [...(command.scopesIfHeld?.(args) ?? []), ...(connection.tenant ? ['iam.tenants:read' as const] : [])];
    const api = new AdminApi(connection, command.scopes(args), ifHeld);
    await command.run({ args, json, api });
  }
  else await command.run({ args, json });
  return 0;
}

/** One line per failure, never a stack trace: our own errors say what to fix, others their message. */
function report(err: unknown): number {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`idp: ${message}\n`);
  return err instanceof CliError ? err.exitCode : 1;
}

function exit(code: number) {
  // Let piped output drain before exiting.
  process.stdout.write('', () => process.exit(code));
}

// A reader that went away (`idp users list | head -1`) is no failure worth a stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => process.exit(err.code === 'EPIPE' ? 0 : 1));

run(process.argv.slice(2)).then(exit, (err: unknown) => exit(report(err)));
