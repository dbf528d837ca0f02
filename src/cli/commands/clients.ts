import { ADMIN_SCOPES, type AdminScope } from '../../domain/clients/admin-scopes.ts';
import { seg, type Page } from '../api.ts';
import type { RemoteCommand } from '../command.ts';
import { UsageError } from '../errors.ts';
import { fields, note, pageNote, print, printJson, table, type Column } from '../output.ts';
import { mapOption } from './api-commands.ts';
import { PAGE_OPTIONS, pageQuery } from './paging.ts';

interface Client extends Record<string, unknown> {
  client_id: string;
  client_name?: string;
  client_secret?: string;
  token_endpoint_auth_method?: string;
  grant_types?: string[];
  redirect_uris?: string[];
  first_party?: boolean;
}

const columns: Column<Client>[] = [
  { header: 'client id', value: (c) => c.client_id },
  { header: 'name', value: (c) => c.client_name },
  { header: 'auth method', value: (c) => c.token_endpoint_auth_method },
  { header: 'grant types', value: (c) => c.grant_types },
  { header: 'first party', value: (c) => c.first_party },
  { header: 'redirect uris', value: (c) => c.redirect_uris },
];

/** client_id first, then the metadata as the server normalised it. */
const clientFields = ({ client_id, client_name, ...rest }: Client) => fields({ client_id, client_name, ...rest });

function metadataFlag(json: string | undefined): Record<string, unknown> {
  if (json === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new UsageError(`--metadata is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError('--metadata must be a JSON object');
  return value as Record<string, unknown>;
}

function adminScopesIn(scope: unknown): AdminScope[] {
  if (typeof scope !== 'string') return [];
  return scope.split(' ').filter((s): s is AdminScope => (ADMIN_SCOPES as readonly string[]).includes(s));
}

export const clientCommands: RemoteCommand[] = [
  {
    name: 'clients create',
    summary: 'register a client; a confidential client\'s secret is shown this once',
    options: {
      name: { type: 'string', value: '<name>', description: 'client_name' },
      id: { type: 'string', value: '<client-id>', description: 'choose the client_id (default: generated)' },
      'redirect-uri': { type: 'string', multiple: true, value: '<uri>', description: 'redirect URI' },
      'post-logout-redirect-uri': { type: 'string', multiple: true, value: '<uri>', description: 'post-logout redirect URI' },
      'grant-type': {
        type: 'string',
        multiple: true,
        value: '<grant>',
        description: 'grant type: authorization_code (default), refresh_token, client_credentials, urn:ietf:params:oauth:grant-type:token-exchange',
      },
      scope: { type: 'string', value: '<scopes>', description: 'OpenID and admin (iam.*) scopes the client may request, space separated' },
      'resource-scope': {
        type: 'string',
        multiple: true,
        value: '<resource>=<scopes>',
        description: 'grant scopes of a resource server by client_credentials, e.g. https://api.example=read (resource_scopes)',
      },
      public: { type: 'boolean', description: 'public client: no secret (token_endpoint_auth_method none), PKCE' },
      'first-party': { type: 'boolean', description: 'first-party client: no consent screen' },
      metadata: { type: 'string', value: '<json>', description: 'RFC 7591 metadata as a JSON object; the flags above override it' },
    },
    // The server lets a caller give a client only admin scopes it holds itself, so the token also
    // asks for the iam.* scopes the new client is to have.
    scopes: (args) => ['iam.clients:create', ...adminScopesIn(args.string('scope') ?? metadataFlag(args.string('metadata')).scope)],
    async run({ args, api, json }) {
      const body: Record<string, unknown> = metadataFlag(args.string('metadata'));
      const set = (key: string, value: unknown) => {
        if (value !== undefined && !(Array.isArray(value) && !value.length)) body[key] = value;
      };
      set('client_id', args.string('id'));
      set('client_name', args.string('name'));
      set('redirect_uris', args.list('redirect-uri'));
      set('post_logout_redirect_uris', args.list('post-logout-redirect-uri'));
      set('grant_types', args.list('grant-type'));
      set('scope', args.string('scope'));
      const resourceScopes = args.list('resource-scope');
      if (resourceScopes.length) body.resource_scopes = mapOption('resource-scope', resourceScopes);
      if (args.flag('public')) body.token_endpoint_auth_method = 'none';
      if (args.flag('first-party')) body.first_party = true;
      // The provider defaults response_types to ["code"], which a client without the
      // authorization_code grant (a machine client) may not have.
      const grants = body.grant_types as string[] | undefined;
      if (grants && !grants.includes('authorization_code') && body.response_types === undefined) {
        body.response_types = [];
        body.redirect_uris ??= [];
      }
      const client = await api.post<Client>('/clients', body);
      if (json) return printJson(client);
      print(clientFields(client));
      if (client.client_secret) note('The client secret is shown only now; store it safely.');
    },
  },
  {
    name: 'clients list',
    summary: 'list clients (no secrets)',
    options: PAGE_OPTIONS,
    scopes: () => ['iam.clients:read'],
    // The list shows only clients whose admin scopes the token holds all of.
    scopesIfHeld: () => [...ADMIN_SCOPES],
    async run({ args, api, json }) {
      const page = await api.get<Page<Client>>('/clients', pageQuery(args));
      if (json) return printJson(page);
      print(table(page.data, columns));
      pageNote(page);
    },
  },
  {
    name: 'clients get',
    summary: 'show a client (no secret)',
    args: ['<client-id>'],
    scopes: () => ['iam.clients:read'],
    scopesIfHeld: () => [...ADMIN_SCOPES],
    async run({ args, api, json }) {
      const client = await api.get<Client>(`/clients/${seg(args.positionals[0]!)}`);
      if (json) return printJson(client);
      print(clientFields(client));
    },
  },
  {
    name: 'clients delete',
    summary: 'delete a client',
    args: ['<client-id>'],
    scopes: () => ['iam.clients:delete'],
    scopesIfHeld: () => [...ADMIN_SCOPES],
    async run({ args, api, json }) {
      const clientId = args.positionals[0]!;
      await api.delete(`/clients/${seg(clientId)}`);
      if (json) return printJson({ client_id: clientId, deleted: true });
      print(`client ${clientId} deleted`);
    },
  },
];
