import { parseArgs } from 'node:util';
import type { Command, LocalCommand } from './command.ts';
import { UsageError } from './errors.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** Placeholder shown in help, e.g. "<url>". */
  value?: string;
  description: string;
}

export type Options = Record<string, OptionSpec>;

/** Accepted by every command. */
export const COMMON_OPTIONS: Options = {
  json: { type: 'boolean', description: 'print JSON instead of tables' },
  help: { type: 'boolean', short: 'h', description: 'show help for the command' },
};

/** Accepted by remote commands; the environment is the better place for the secret (ps shows flags). */
export const CONNECTION_OPTIONS: Options = {
  issuer: { type: 'string', value: '<url>', description: 'issuer URL (env IDP_ISSUER, else ISSUER, else http://localhost:$PORT)' },
  'client-id': { type: 'string', value: '<id>', description: 'admin client id (env IDP_CLIENT_ID, else BOOTSTRAP_ADMIN_CLIENT_ID)' },
  'client-secret': {
    type: 'string',
    value: '<secret>',
    description: 'admin client secret (env IDP_CLIENT_SECRET, else BOOTSTRAP_ADMIN_CLIENT_SECRET)',
  },
  tenant: {
    type: 'string',
    value: '<id|slug>',
    description: 'act in this tenant (sent as X-Tenant-Id; env IDP_TENANT): your own, or any for a platform client',
  },
};

type Value = string | boolean | (string | boolean)[] | undefined;

/** Parsed options of one command, with typed accessors that turn bad values into usage errors. */
export class Args {
  readonly positionals: string[];
  readonly #values: Record<string, Value>;

  constructor(values: Record<string, Value>, positionals: string[]) {
    this.#values = values;
    this.positionals = positionals;
  }

  string(name: string): string | undefined {
    const v = this.#values[name];
    return typeof v === 'string' ? v : undefined;
  }

  required(name: string): string {
    const v = this.string(name);
    if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
    return v;
  }

  list(name: string): string[] {
    const v = this.#values[name];
    return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
  }

  flag(name: string): boolean {
    return this.#values[name] === true;
  }

  /** A boolean option as given: true (--name), false (--no-name) or undefined (neither). */
  boolean(name: string): boolean | undefined {
    const v = this.#values[name];
    return typeof v === 'boolean' ? v : undefined;
  }

  has(name: string): boolean {
    return this.#values[name] !== undefined;
  }

  /** A whole number in [min, max]; the server validates its own limits, this only catches typos. */
  int(name: string, min: number, max: number): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < min || n > max) throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
    return n;
  }

  choice<T extends string>(name: string, choices: readonly T[]): T | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}`);
    return v as T;
  }
}

export type Parsed =
  | { kind: 'help'; text: string; exitCode: number }
  | { kind: 'run'; command: Command; args: Args; json: boolean };

const optionsOf = (command: Command): Options => ({
  ...COMMON_OPTIONS,
  ...(command.scopes ? CONNECTION_OPTIONS : {}),
  ...command.options,
});

const subcommandsOf = (commands: Command[], group: string) =>
  commands.filter((c) => c.name.startsWith(`${group} `)).map((c) => c.name.slice(group.length + 1));

/**
 * Command words may be mixed with options (`idp --json users list`): find them by skipping options,
 * including the values of the connection options, which are the only ones allowed before the words.
 */
function commandWords(argv: string[]): { word: string; index: number }[] {
  const words: { word: string; index: number }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') break;
    if (token.startsWith('-')) {
      const name = token.replace(/^--?/, '');
      if (CONNECTION_OPTIONS[name]?.type === 'string') i++;
      continue;
    }
    words.push({ word: token, index: i });
  }
  return words;
}

/** parseArgs' messages are long and mention its own terms; keep the first sentence. */
function parseArgsMessage(err: unknown): string {
  const message = (err as Error).message.split(/\.\s/)[0]!.replace(/\.$/, '');
  return message.charAt(0).toLowerCase() + message.slice(1);
}

export function parseCommandLine(argv: string[], commands: Command[]): Parsed {
  const words = commandWords(argv);
  const wantsHelp = argv.includes('--help') || argv.includes('-h');
  const first = words[0]?.word;

  if (!first) {
    if (argv.length === 0) return { kind: 'help', text: usage(commands), exitCode: 2 };
    if (wantsHelp) return { kind: 'help', text: usage(commands), exitCode: 0 };
    throw new UsageError('no command given (see idp help)');
  }
  if (first === 'help') {
    const topic = words.slice(1).map((w) => w.word).join(' ');
    return { kind: 'help', text: topic ? helpFor(topic, commands) : usage(commands), exitCode: 0 };
  }

  const second = words[1]?.word;
  const command =
    (second !== undefined && commands.find((c) => c.name === `${first} ${second}`)) || commands.find((c) => c.name === first);
  if (!command) {
    const subs = subcommandsOf(commands, first);
    if (!subs.length) throw new UsageError(`unknown command "${first}" (see idp help)`);
    if (second === undefined) {
      if (wantsHelp) return { kind: 'help', text: helpFor(first, commands), exitCode: 0 };
      throw new UsageError(`"idp ${first}" needs a command: ${subs.join(', ')}`);
    }
    throw new UsageError(`unknown command "${first} ${second}" (expected ${subs.join(', ')})`);
  }

  const used = new Set(words.slice(0, command.name.split(' ').length).map((w) => w.index));
  const rest = argv.filter((_, i) => !used.has(i));
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: optionsOf(command), strict: true, allowPositionals: true, allowNegative: true });
  } catch (err) {
    throw new UsageError(`${parseArgsMessage(err)} (see idp ${command.name} --help)`);
  }
  if (parsed.values.help) return { kind: 'help', text: commandHelp(command), exitCode: 0 };

  const expected = command.args ?? [];
  const synopsis = `idp ${command.name}${expected.map((a) => ` ${a}`).join('')}`;
  if (parsed.positionals.length < expected.length) {
    throw new UsageError(`missing ${expected[parsed.positionals.length]} (usage: ${synopsis})`);
  }
  if (parsed.positionals.length > expected.length) {
    throw new UsageError(`unexpected argument "${parsed.positionals[expected.length]}" (usage: ${synopsis})`);
  }
  return {
    kind: 'run',
    command,
    args: new Args(parsed.values as Record<string, Value>, parsed.positionals),
    json: parsed.values.json === true,
  };
}

// Help texts, generated from the same command table the parser uses.

function optionLines(options: Options): string {
  const rows = Object.entries(options).map(([name, o]) => [
    `${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` ${o.value}` : ''}`,
    `${o.description}${o.multiple ? ' (repeatable)' : ''}`,
  ]);
  const width = Math.max(...rows.map(([flag]) => flag!.length));
  return rows.map(([flag, text]) => `  ${flag!.padEnd(width)}  ${text}`).join('\n');
}

function commandLines(commands: Command[]): string {
  const rows = commands.map((c) => [`${c.name}${(c.args ?? []).map((a) => ` ${a}`).join('')}`, c.summary]);
  const width = Math.max(...rows.map(([n]) => n!.length));
  return rows.map(([n, s]) => `  ${n!.padEnd(width)}  ${s}`).join('\n');
}

export function commandHelp(command: Command): string {
  const synopsis = `idp ${command.name}${(command.args ?? []).map((a) => ` ${a}`).join('')} [options]`;
  const own = command.options && Object.keys(command.options).length ? `\nOptions:\n${optionLines(command.options)}\n` : '';
  const connection = command.scopes ? `\nConnection:\n${optionLines(CONNECTION_OPTIONS)}\n` : '';
  return `usage: ${synopsis}\n\n${command.summary}\n${own}${connection}\nCommon:\n${optionLines(COMMON_OPTIONS)}\n`;
}

function helpFor(topic: string, commands: Command[]): string {
  const command = commands.find((c) => c.name === topic);
  if (command) return commandHelp(command);
  const group = commands.filter((c) => c.name.startsWith(`${topic} `));
  if (!group.length) throw new UsageError(`unknown command "${topic}" (see idp help)`);
  return `usage: idp ${topic} <command> [options]\n\n${commandLines(group)}\n\nRun "idp ${topic} <command> --help" for its options.\n`;
}

const HELP_ENTRY: LocalCommand = { name: 'help', args: ['[command]'], summary: 'show this text, or a command\'s help', run: async () => {} };

export function usage(commands: Command[]): string {
  const local = [...commands.filter((c) => !c.scopes), HELP_ENTRY];
  const remote = commands.filter((c) => c.scopes);
  return `usage: idp <command> [options]

Local commands (open the server's store with its settings: DATABASE_URL, DATA_DIR, KEY_ENCRYPTION_KEY...;
on the embedded store only while the server is stopped, and never a new one):
${commandLines(local)}

Admin API commands (over HTTP with a client_credentials token):
${commandLines(remote)}

Connection (admin API commands):
${optionLines(CONNECTION_OPTIONS)}

Common:
${optionLines(COMMON_OPTIONS)}

Run "idp <command> --help" for a command's options.
Exit status: 0 success, 1 failure (API error, connection), 2 wrong usage (command, options, credentials).
"idp --version" prints the version.
`;
}
