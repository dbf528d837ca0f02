import type { Page } from '../api.ts';
import type { RemoteCommand } from '../command.ts';
import { fields, pageNote, print, printJson, table, type Column } from '../output.ts';
import { PAGE_OPTIONS, pageQuery } from './paging.ts';

interface ResourceServer extends Record<string, unknown> {
  id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  accessTokenFormat: 'jwt' | 'opaque';
  accessTokenTtl: number | null;
  rbac: boolean;
}

const columns: Column<ResourceServer>[] = [
  { header: 'id', value: (r) => r.id },
  { header: 'identifier', value: (r) => r.identifier },
  { header: 'name', value: (r) => r.name },
  { header: 'format', value: (r) => r.accessTokenFormat },
  { header: 'ttl', value: (r) => r.accessTokenTtl },
  { header: 'rbac', value: (r) => r.rbac },
  { header: 'scopes', value: (r) => r.scopes },
];

export const resourceServerCommands: RemoteCommand[] = [
  {
    name: 'resource-servers create',
    summary: 'register a resource server (an RFC 8707 resource identifier and its scopes)',
    options: {
      identifier: { type: 'string', value: '<uri>', description: 'resource identifier, an absolute URI (required)' },
      scope: { type: 'string', multiple: true, value: '<scope>', description: 'a scope it defines; may be space separated' },
      name: { type: 'string', value: '<name>', description: 'display name' },
      format: { type: 'string', value: 'jwt|opaque', description: 'access token format (default jwt)' },
      ttl: { type: 'string', value: '<seconds>', description: 'access token lifetime, 60-86400 (default: the server\'s)' },
      rbac: { type: 'boolean', description: "role-based access: users' and service accounts' tokens get only the scopes their roles grant" },
    },
    scopes: () => ['iam.resource-servers:create'],
    async run({ args, api, json }) {
      const format = args.choice('format', ['jwt', 'opaque'] as const);
      const ttl = args.int('ttl', 1, 1_000_000);
      const created = await api.post<ResourceServer>('/resource-servers', {
        identifier: args.required('identifier'),
        scopes: args.list('scope').flatMap((s) => s.split(/\s+/)).filter(Boolean),
        ...(args.has('name') ? { name: args.string('name') } : {}),
        ...(format ? { accessTokenFormat: format } : {}),
        ...(ttl !== undefined ? { accessTokenTtl: ttl } : {}),
        ...(args.flag('rbac') ? { rbac: true } : {}),
      });
      if (json) return printJson(created);
      print(fields(created));
    },
  },
  {
    name: 'resource-servers list',
    summary: 'list resource servers',
    options: PAGE_OPTIONS,
    scopes: () => ['iam.resource-servers:read'],
    async run({ args, api, json }) {
      const page = await api.get<Page<ResourceServer>>('/resource-servers', pageQuery(args));
      if (json) return printJson(page);
      print(table(page.data, columns));
      pageNote(page);
    },
  },
];
