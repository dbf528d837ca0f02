import type { AdminScope } from '../../domain/clients/admin-scopes.ts';
import { seg, type AdminApi, type Page } from '../api.ts';
import type { Args } from '../args.ts';
import type { RemoteCommand } from '../command.ts';
import { CliError } from '../errors.ts';
import { fields, note, pageNote, print, printJson, table, type Column } from '../output.ts';
import { PAGE_OPTIONS, pageQuery } from './paging.ts';

export interface User extends Record<string, unknown> {
  id: string;
  email: string;
  emailVerified: boolean;
  givenName: string | null;
  familyName: string | null;
  status: 'active' | 'suspended' | 'deactivated';
  lastLoginAt: string | null;
}

const STATUSES = ['active', 'suspended', 'deactivated'] as const;

const columns: Column<User>[] = [
  { header: 'id', value: (u) => u.id },
  { header: 'email', value: (u) => u.email },
  { header: 'name', value: (u) => [u.givenName, u.familyName].filter(Boolean).join(' ') },
  { header: 'status', value: (u) => u.status },
  { header: 'verified', value: (u) => u.emailVerified },
  { header: 'last login', value: (u) => u.lastLoginAt },
];

/** The user with exactly this email (search also matches names and parts of addresses). */
export async function findUserByEmail(api: AdminApi, email: string): Promise<User | undefined> {
  const page = await api.get<Page<User>>('/users', { search: email, pageSize: 100 });
  return page.data.find((u) => u.email.toLowerCase() === email.toLowerCase());
}

// Users may be named by id or, for people at a terminal, by email (one more read).
export const byEmail = (args: Args) => args.positionals[0]!.includes('@');
const withLookup = (scope: AdminScope) => (args: Args): AdminScope[] => (byEmail(args) ? ['iam.users:read', scope] : [scope]);

export async function resolveUser(api: AdminApi, args: Args): Promise<string> {
  const ref = args.positionals[0]!;
  if (!byEmail(args)) return ref;
  const user = await findUserByEmail(api, ref);
  if (!user) throw new CliError(`no user with the email ${ref}`);
  return user.id;
}

function statusCommand(verb: 'suspend' | 'reactivate', summary: string): RemoteCommand {
  return {
    name: `users ${verb}`,
    summary,
    args: ['<user-id|email>'],
    scopes: withLookup('iam.users:suspend'),
    async run({ args, api, json }) {
      const user = await api.post<User>(`/users/${seg(await resolveUser(api, args))}/${verb}`);
      if (json) return printJson(user);
      print(`user ${user.email} (${user.id}) is ${user.status}`);
    },
  };
}

export const userCommands: RemoteCommand[] = [
  {
    name: 'users create',
    summary: 'create a user',
    options: {
      email: { type: 'string', value: '<email>', description: 'email address (required)' },
      password: { type: 'string', value: '<password>', description: 'initial password, 8+ characters (default: none, cannot sign in)' },
      'given-name': { type: 'string', value: '<name>', description: 'given name' },
      'family-name': { type: 'string', value: '<name>', description: 'family name' },
      locale: { type: 'string', value: '<tag>', description: 'BCP 47 language tag, e.g. en or vi' },
      verified: { type: 'boolean', description: 'the email address is known to be the user\'s: mark it verified' },
      'email-verified': { type: 'boolean', description: 'the same as --verified' },
    },
    scopes: () => ['iam.users:create'],
    async run({ args, api, json }) {
      const optional = (key: string, flag: string) => (args.has(flag) ? { [key]: args.string(flag) } : {});
      const user = await api.post<User>('/users', {
        email: args.required('email'),
        ...optional('password', 'password'),
        ...optional('givenName', 'given-name'),
        ...optional('familyName', 'family-name'),
        ...optional('locale', 'locale'),
        ...(args.flag('verified') || args.flag('email-verified') ? { emailVerified: true } : {}),
      });
      if (json) return printJson(user);
      print(fields(user));
      note(
        user.emailVerified
          ? 'The email address is marked verified.'
          : 'The email address is not verified; --verified marks it verified when you know it is the user\'s.',
      );
    },
  },
  {
    name: 'users list',
    summary: 'list users',
    options: {
      search: { type: 'string', value: '<text>', description: 'match email and names' },
      status: { type: 'string', value: STATUSES.join('|'), description: 'only users with this status' },
      ...PAGE_OPTIONS,
    },
    scopes: () => ['iam.users:read'],
    async run({ args, api, json }) {
      const page = await api.get<Page<User>>('/users', {
        ...pageQuery(args),
        search: args.string('search'),
        status: args.choice('status', STATUSES),
      });
      if (json) return printJson(page);
      print(table(page.data, columns));
      pageNote(page);
    },
  },
  {
    name: 'users get',
    summary: 'show a user',
    args: ['<user-id|email>'],
    scopes: withLookup('iam.users:read'),
    async run({ args, api, json }) {
      const user = await api.get<User>(`/users/${seg(await resolveUser(api, args))}`);
      if (json) return printJson(user);
      print(fields(user));
    },
  },
  statusCommand('suspend', 'suspend a user: they cannot sign in, and their sessions and tokens are revoked'),
  statusCommand('reactivate', 'reactivate a suspended user'),
];
