import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ADMIN_SCOPES, type AdminScope } from '../../domain/clients/admin-scopes.ts';
import { adminOperationSpecs, type AdminCommand } from '../../http/api/admin-operations.ts';
import type { OperationSpec } from '../../http/api/operation.ts';
import { seg, type Page } from '../api.ts';
import type { Args, OptionSpec, Options } from '../args.ts';
import { COMMON_OPTIONS, CONNECTION_OPTIONS } from '../args.ts';
import type { RemoteCommand } from '../command.ts';
import { UsageError } from '../errors.ts';
import { fields, note, pageNote, print, printJson, table } from '../output.ts';
import { byEmail, resolveUser } from './users.ts';

// The admin API commands, one per entry of the operations table the routes are made from
// (src/http/api/admin-operations.ts): positional arguments from the path, options from the query
// and body schemas, help from the summaries. A hand-written command of the same name (with
// friendlier options or output) takes an entry's place.

interface JsonSchema {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
  items?: JsonSchema;
  additionalProperties?: JsonSchema | boolean;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  description?: string;
}

type Kind = 'boolean' | 'string' | 'number' | 'list' | 'map' | 'json';

/** One option made from a schema property: how its text becomes the JSON value sent. */
interface Field {
  property: string;
  kind: Kind;
  choices: string[];
  required: boolean;
  description?: string;
}

const jsonSchema = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;

/** The non-null alternatives of a property (zod writes .nullable() as anyOf [x, null]). */
function alternatives(p: JsonSchema): JsonSchema[] {
  const all = p.anyOf ?? p.oneOf ?? [p];
  return all.filter((b) => b.type !== 'null');
}

function kindOf(p: JsonSchema): Kind {
  const [only, ...more] = alternatives(p);
  if (!only || more.length) return 'json';
  const type = Array.isArray(only.type) ? only.type.find((t) => t !== 'null') : only.type;
  if (type === 'boolean') return 'boolean';
  if (type === 'string') return 'string';
  if (type === 'integer' || type === 'number') return 'number';
  if (type === 'array' && ['string', 'integer', 'number'].includes(String(only.items?.type))) return 'list';
  // An object of strings by key (resource_scopes): repeated <key>=<value>.
  if (type === 'object' && !only.properties && typeof only.additionalProperties === 'object' && only.additionalProperties.type === 'string') return 'map';
  return 'json';
}

function choicesOf(p: JsonSchema): string[] {
  return alternatives(p).flatMap((b) => [...(b.enum ?? []), ...(b.const !== undefined ? [b.const] : [])]).map(String);
}

/** The properties of an object schema, or of every branch of a union (identity providers by type). */
export function fieldsOf(schema: z.ZodType): Field[] {
  const byName = new Map<string, Field>();
  const visit = (node: JsonSchema, requiredHere: boolean) => {
    for (const branch of [...(node.anyOf ?? []), ...(node.oneOf ?? []), ...(node.allOf ?? [])]) visit(branch, false);
    for (const [property, p] of Object.entries(node.properties ?? {})) {
      const seen = byName.get(property);
      const required = requiredHere && (node.required ?? []).includes(property);
      if (seen) {
        seen.choices = [...new Set([...seen.choices, ...choicesOf(p)])];
        if (seen.kind !== kindOf(p)) seen.kind = 'json';
        continue;
      }
      byName.set(property, { property, kind: kindOf(p), choices: choicesOf(p), required, ...(p.description ? { description: p.description } : {}) });
    }
  };
  visit(jsonSchema(schema), true);
  return [...byName.values()];
}

/** givenName -> given-name, client_name -> client-name. */
export const flagName = (property: string) => property.replace(/_/g, '-').replace(/([a-z0-9])([A-Z])/g, '$1-$2').toLowerCase();

/** Options the CLI keeps for itself; a property of the same name is sent through --body. */
const RESERVED = new Set([...Object.keys(COMMON_OPTIONS), ...Object.keys(CONNECTION_OPTIONS), 'body']);

function optionFor(f: Field, where: 'body' | 'query'): OptionSpec {
  const value = f.choices.length ? f.choices.join('|') : f.kind === 'number' ? '<n>' : f.kind === 'json' ? '<json>' : f.kind === 'map' ? '<key>=<value>' : '<value>';
  const text = f.description ?? `${where === 'body' ? '' : 'query '}${f.property}`;
  const extra = [
    f.kind === 'boolean' && `--no-${flagName(f.property)} sends false`,
    f.kind === 'json' && 'as JSON',
    f.kind === 'map' && 'one <key>=<value> each',
    f.required && 'required',
  ].filter(Boolean);
  return f.kind === 'boolean'
    ? { type: 'boolean', description: `${text}${extra.length ? ` (${extra.join('; ')})` : ''}` }
    : { type: 'string', value, multiple: f.kind === 'list' || f.kind === 'map', description: `${text}${extra.length ? ` (${extra.join('; ')})` : ''}` };
}

function parseJson(flag: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${flag} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * `<key>=<value>` options (repeatable) as one object, split at the first `=`: keys are resource
 * identifiers, which should have no query (RFC 8707); one that does goes through --body. A key
 * given twice collects its values, space-separated (scopes).
 */
export function mapOption(flag: string, items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const at = item.indexOf('=');
    const key = item.slice(0, at).trim();
    const value = item.slice(at + 1).trim();
    if (at < 1 || !key || !value) throw new UsageError(`--${flag} takes <key>=<value>, e.g. --${flag} https://api.example=read`);
    if (key === '__proto__') throw new UsageError(`--${flag}: ${key} is not a key`);
    out[key] = Object.hasOwn(out, key) ? `${out[key]} ${value}` : value;
  }
  return out;
}

/** The JSON value of one option, or undefined when it was not given. */
function valueOf(args: Args, f: Field): unknown {
  const flag = flagName(f.property);
  if (f.kind === 'boolean') return args.boolean(flag);
  if (f.kind === 'list') {
    const items = args.list(flag);
    return items.length ? items : undefined;
  }
  if (f.kind === 'map') {
    const items = args.list(flag);
    return items.length ? mapOption(flag, items) : undefined;
  }
  const text = args.string(flag);
  if (text === undefined) return undefined;
  if (f.kind === 'number') {
    if (!/^-?\d+(\.\d+)?$/.test(text)) throw new UsageError(`--${flag} must be a number`);
    return Number(text);
  }
  if (f.choices.length && !f.choices.includes(text)) throw new UsageError(`--${flag} must be one of ${f.choices.join(', ')}`);
  return f.kind === 'json' ? parseJson(flag, text) : text;
}

function objectFrom(args: Args, fieldList: Field[], base: Record<string, unknown> = {}): Record<string, unknown> {
  const out = { ...base };
  for (const f of fieldList) {
    const v = valueOf(args, f);
    if (v !== undefined) out[f.property] = v;
  }
  return out;
}

/** --body '<json>', or @file, or @- for standard input (a SAML metadata document is long). */
function bodyFlag(args: Args): Record<string, unknown> {
  const given = args.string('body');
  if (given === undefined) return {};
  let text = given;
  if (given.startsWith('@')) {
    const file = given.slice(1);
    try {
      text = readFileSync(file === '-' ? 0 : file, 'utf8');
    } catch (err) {
      throw new UsageError(`--body ${given}: cannot read ${file === '-' ? 'standard input' : file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  }
  const value = parseJson('body', text);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError('--body must be a JSON object');
  return value as Record<string, unknown>;
}

const pathParams = (path: string) => [...path.matchAll(/:(\w+)/g)].map((m) => m[1]!);
/** Users may be named by email where the path takes their id (one more read). */
const takesUser = (spec: OperationSpec) => spec.path.startsWith('/users/:id');
const argName = (spec: OperationSpec, param: string) => (takesUser(spec) ? '<user-id|email>' : `<${flagName(param)}>`);
const noun = (command: string) => command.split(' ')[0]!.replace(/s$/, '').replace(/-/g, ' ');

/** A table of a page's records: their plain (non-object) fields, in the records' order. */
function pageTable(page: Page<Record<string, unknown>>): string {
  const first = page.data[0] ?? {};
  const keys = Object.keys(first).filter((k) => {
    const v = first[k];
    return v === null || typeof v !== 'object' || (Array.isArray(v) && v.every((x) => typeof x !== 'object'));
  });
  return table(page.data, keys.map((k) => ({ header: flagName(k).replace(/-/g, ' '), value: (r) => r[k] })));
}

export function apiCommand(command: AdminCommand): RemoteCommand {
  const spec: OperationSpec = adminOperationSpecs[command];
  const params = pathParams(spec.path);
  const bodyFields = spec.body ? fieldsOf(spec.body).filter((f) => !RESERVED.has(flagName(f.property))) : [];
  const queryFields = spec.query ? fieldsOf(spec.query).filter((f) => !RESERVED.has(flagName(f.property))) : [];
  const options: Options = Object.fromEntries([
    ...queryFields.map((f) => [flagName(f.property), optionFor(f, 'query')] as const),
    ...bodyFields.map((f) => [flagName(f.property), optionFor(f, 'body')] as const),
    ...(spec.body ? [['body', { type: 'string', value: '<json>', description: 'the request body as a JSON object (@file or @- reads it from a file or standard input); the options above override its fields' }] as const] : []),
  ]);
  const summary = spec.summary.charAt(0).toLowerCase() + spec.summary.slice(1);

  return {
    name: command,
    summary,
    args: params.map((p) => argName(spec, p)),
    options,
    scopes: (args) => [spec.scope, ...(takesUser(spec) && byEmail(args) ? ['iam.users:read' as const] : [])],
    // A client holding admin scopes can be seen or changed only with a token holding all of them.
    ...(spec.path.startsWith('/clients') || spec.path.startsWith('/api-keys') ? { scopesIfHeld: (): AdminScope[] => [...ADMIN_SCOPES] } : {}),
    async run({ args, api, json }) {
      const values = [...args.positionals];
      if (takesUser(spec)) values[0] = await resolveUser(api, args);
      let i = 0;
      const path = spec.path.replace(/:(\w+)/g, () => seg(values[i++]!));
      const query = objectFrom(args, queryFields) as Record<string, string | number>;
      let body: Record<string, unknown> | undefined;
      if (spec.body) {
        body = objectFrom(args, bodyFields, bodyFlag(args));
        if (spec.method === 'patch' && !Object.keys(body).length) {
          throw new UsageError(`nothing to change: give an option or --body (see idp ${command} --help)`);
        }
      }
      const result = await api.request<unknown>(spec.method.toUpperCase() as Uppercase<OperationSpec['method']>, path, {
        ...(body !== undefined ? { body } : {}),
        ...(Object.keys(query).length ? { query } : {}),
      });

      if (result === undefined) {
        if (json) return printJson({ id: args.positionals.join(' '), deleted: true });
        return print(`${noun(command)} ${args.positionals.join(' ')} deleted`);
      }
      if (json) return printJson(result);
      const record = result as Record<string, unknown>;
      if (Array.isArray(record.data)) {
        const page = record as unknown as Page<Record<string, unknown>>;
        print(pageTable(page));
        // Keyset pages (the audit trail) go on from their cursor rather than a page number.
        if ('nextCursor' in record) return note(typeof record.nextCursor === 'string' ? `next: --cursor ${record.nextCursor}` : page.data.length ? 'last page' : 'no results');
        return pageNote(page);
      }
      print(fields(record));
      if (typeof record.client_secret === 'string') note('The client secret is shown only now; store it safely.');
      if (typeof record.key === 'string') note('The API key is shown only now; store it safely.');
    },
  };
}

/**
 * A command for every operation of the table, in its order: the hand-written one of that name if
 * there is one, else one made from the entry. A hand-written command naming no operation is a
 * mistake the first run shows.
 */
export function adminApiCommands(handWritten: RemoteCommand[]): RemoteCommand[] {
  const names = Object.keys(adminOperationSpecs) as AdminCommand[];
  const stray = handWritten.filter((c) => !(names as string[]).includes(c.name));
  if (stray.length) throw new Error(`no admin API operation for the commands ${stray.map((c) => c.name).join(', ')}`);
  return names.map((name) => {
    const { method, path } = adminOperationSpecs[name];
    return { ...(handWritten.find((c) => c.name === name) ?? apiCommand(name)), operation: { method, path } };
  });
}
