import type { SecretBox } from '../../infra/crypto.ts';
import { constantTimeEqual } from '../../infra/crypto.ts';
import type { EventQuery, EventsReader, Party } from '../../repos/events.ts';
import type { UsersRepo } from '../../repos/users.ts';
import { AppError } from '../errors.ts';
import { toRecordedEvent, type Actor, type RecordedEvent, type Target } from './events.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';

// The audit trail as operators read it: filters, keyset pages on seq, and the retention sweep.

export const ACTOR_TYPES = ['user', 'client', 'system', 'identity_provider', 'api_key'] as const satisfies readonly Actor['type'][];
export const TARGET_TYPES = [
  'user', 'client', 'resource_server', 'identity_provider', 'key', 'session', 'webhook', 'api_key', 'role', 'service_account', 'tenant',
] as const satisfies readonly Target['type'][];
// A type added to Actor or Target must be added to these lists too (the filters validate against them).
const everyActorType: Exclude<Actor['type'], (typeof ACTOR_TYPES)[number]> extends never ? true : never = true;
const everyTargetType: Exclude<Target['type'], (typeof TARGET_TYPES)[number]> extends never ? true : never = true;
void everyActorType;
void everyTargetType;

/** A type filter: `user.created` (exact), `user.*` (every type under user.), `*` (any). */
export interface TypePatterns {
  exact: string[];
  prefixes: string[];
}

const TYPE_PATTERN = /^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$/;
const MAX_TYPE_PATTERNS = 50;

/**
 * A comma-separated list of event types and prefixes (`user.created,user.mfa_*` is not a prefix:
 * only a whole last segment `*` is). Throws IDENT_VALIDATION naming `param` on bad input.
 */
export function parseTypePatterns(text: string, param: string): TypePatterns {
  const items = text.split(',').map((s) => s.trim());
  if (items.length > MAX_TYPE_PATTERNS) throw new AppError('IDENT_VALIDATION', `${param}: at most ${MAX_TYPE_PATTERNS} types`);
  const out: TypePatterns = { exact: [], prefixes: [] };
  for (const item of items) {
    if (!TYPE_PATTERN.test(item) || item.length > 100) {
      throw new AppError('IDENT_VALIDATION', `${param}: "${item.slice(0, 100)}" is not an event type (user.created) or prefix (user.*)`);
    }
    if (item === '*') out.prefixes.push('');
    else if (item.endsWith('.*')) out.prefixes.push(item.slice(0, -1));
    else out.exact.push(item);
  }
  return out;
}

export function matchesTypes(patterns: TypePatterns, type: string): boolean {
  return patterns.exact.includes(type) || patterns.prefixes.some((p) => type.startsWith(p));
}

/**
 * An actor or target filter: `<type>:<id>` (client:admin), `<type>` alone (system, or every
 * client), or a bare id of any type. A value whose part before the first colon is not a known type
 * is a bare id, so ids with colons need no escaping; an id that is itself a type name is given with
 * its type (client:user).
 */
export function parseParty(text: string, param: 'actor' | 'target'): Party {
  const types: readonly string[] = param === 'actor' ? ACTOR_TYPES : TARGET_TYPES;
  if (!text || text.length > 300) throw new AppError('IDENT_VALIDATION', `${param}: give <type>:<id>, <type> or <id> (at most 300 characters)`);
  const colon = text.indexOf(':');
  if (colon > 0 && types.includes(text.slice(0, colon))) {
    const id = text.slice(colon + 1);
    if (!id) throw new AppError('IDENT_VALIDATION', `${param}: "${text}" names a type but no id (give the type alone for every ${text.slice(0, colon)})`);
    return { type: text.slice(0, colon), id };
  }
  if (types.includes(text)) return { type: text };
  return { id: text };
}

/** What GET /audit/events takes, already parsed from the query. */
export interface AuditFilters {
  types?: TypePatterns;
  actor?: Party;
  target?: Party;
  from?: Date;
  to?: Date;
}

export interface AuditPage {
  data: RecordedEvent[];
  nextCursor: string | null;
}

const CURSOR_PURPOSE = 'audit-cursor';
const SEQ = /^[1-9][0-9]{0,18}$/;

/**
 * Cursors are opaque: the seq to continue below, MAC'd together with the query it belongs to, so a
 * made-up cursor, or one taken to another query (where it would skip or repeat rows), is refused.
 */
export function createCursorCodec(box: Pick<SecretBox, 'mac'>) {
  const tag = (seq: string, query: string) => box.mac(CURSOR_PURPOSE, `${seq}\0${query}`).subarray(0, 16).toString('base64url');
  return {
    encode(seq: string, query: string): string {
      return `${Buffer.from(seq).toString('base64url')}.${tag(seq, query)}`;
    },
    /** The seq, or IDENT_VALIDATION. */
    decode(cursor: string, query: string): string {
      const [head, mac, ...rest] = cursor.split('.');
      const seq = head && /^[A-Za-z0-9_-]{1,32}$/.test(head) ? Buffer.from(head, 'base64url').toString('latin1') : '';
      if (rest.length || !mac || !SEQ.test(seq) || !constantTimeEqual(mac, tag(seq, query))) {
        throw new AppError('IDENT_VALIDATION', 'cursor: not a cursor of this query (pass nextCursor from the previous page, with the same filters)');
      }
      return seq;
    },
  };
}

/** The filters as one canonical string: what a cursor is bound to. */
function queryKey(q: EventQuery): string {
  const types = q.types ? { exact: [...q.types.exact].sort(), prefixes: [...q.types.prefixes].sort() } : null;
  return JSON.stringify([q.tenantId ?? null, types, q.actor ?? null, q.target ?? null, q.user ?? null, q.from?.toISOString() ?? null, q.to?.toISOString() ?? null]);
}

export function createAuditLog(deps: { reader: EventsReader; users: Pick<UsersRepo, 'findById'>; box: Pick<SecretBox, 'mac'> }) {
  // Every read is one tenant's: the scope's.
  const cursors = createCursorCodec(deps.box);

  async function page(query: EventQuery, opts: { limit: number; cursor?: string | undefined }): Promise<AuditPage> {
    if (query.from && query.to && query.from >= query.to) throw new AppError('IDENT_VALIDATION', 'from must be before to');
    const key = queryKey(query);
    const before = opts.cursor === undefined ? undefined : cursors.decode(opts.cursor, key);
    // One row more than asked says whether another page follows, so the last page says null.
    const rows = await deps.reader.list(query, before, opts.limit + 1);
    const data = rows.slice(0, opts.limit).map(toRecordedEvent);
    const last = data.at(-1);
    return { data, nextCursor: rows.length > opts.limit && last ? cursors.encode(last.seq, key) : null };
  }

  return {
    /** The scope's tenant's events, newest first; `cursor` is the previous page's nextCursor. */
    list: (scope: TenantScope, filters: AuditFilters, opts: { limit: number; cursor?: string | undefined }) =>
      page({ ...filters, tenantId: scope.tenantId }, opts),
    /**
     * One user's events (about them or by them); IDENT_USER_NOT_FOUND for an unknown user, 403
     * IDENT_CROSS_TENANT for another tenant's.
     */
    async listForUser(scope: TenantScope, userId: string, filters: Omit<AuditFilters, 'actor' | 'target'>, opts: { limit: number; cursor?: string | undefined }) {
      const user = await deps.users.findById(userId);
      if (!user) throw new AppError('IDENT_USER_NOT_FOUND', 'no user with this id');
      assertInTenant(scope, user.tenant_id, 'the user');
      return page({ ...filters, user: userId, tenantId: scope.tenantId }, opts);
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

// Measured like the token sweeper's batches: small enough that each delete is a short transaction.
const RETENTION_BATCH = 2000;

/**
 * Deletes events older than `days` (AUDIT_RETENTION_DAYS; 0 keeps them for ever) in batches, each
 * its own short transaction under an advisory lock: one instance sweeps at a time, and a second
 * one arriving meanwhile simply finds the lock taken and leaves the work to the first.
 */
export function createAuditRetention(deps: { reader: Pick<EventsReader, 'sweepOlderThan'>; days: number; batchSize?: number; now?: () => Date }) {
  const batch = deps.batchSize ?? RETENTION_BATCH;
  let stopping = false;
  return {
    async sweep(): Promise<number> {
      if (deps.days <= 0) return 0;
      const cutoff = new Date((deps.now?.() ?? new Date()).getTime() - deps.days * 86_400_000);
      let total = 0;
      while (!stopping) {
        const deleted = await deps.reader.sweepOlderThan(cutoff, batch);
        if (deleted === undefined) break;
        total += deleted;
        if (deleted < batch) break;
      }
      return total;
    },
    stop() {
      stopping = true;
    },
  };
}

export type AuditRetention = ReturnType<typeof createAuditRetention>;
