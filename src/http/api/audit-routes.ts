import { parseParty, parseTypePatterns, type AuditFilters, type AuditLog } from '../../domain/events/audit.ts';
import type { AdminHandlers, AuditCommand } from './admin-operations.ts';
import { auditEventView, instantOf } from './audit-schemas.ts';
import { tenantScope } from './auth.ts';

interface EventsQuery {
  type?: string;
  actor?: string;
  target?: string;
  from?: string;
  to?: string;
  limit: number;
  cursor?: string;
}

/** The query's filters (validated by the schema) in the domain's terms. */
function filtersOf(q: EventsQuery): AuditFilters {
  return {
    ...(q.type !== undefined ? { types: parseTypePatterns(q.type, 'type') } : {}),
    ...(q.actor !== undefined ? { actor: parseParty(q.actor, 'actor') } : {}),
    ...(q.target !== undefined ? { target: parseParty(q.target, 'target') } : {}),
    ...(q.from !== undefined ? { from: instantOf(q.from)! } : {}),
    ...(q.to !== undefined ? { to: instantOf(q.to)! } : {}),
  };
}

const pageOf = (page: Awaited<ReturnType<AuditLog['list']>>) => ({ data: page.data.map(auditEventView), nextCursor: page.nextCursor });

/** The audit trail's read-only operations; nothing in the API changes or deletes an event. */
export function auditHandlers(audit: AuditLog): AdminHandlers<AuditCommand> {
  return {
    'audit events': async (ctx, { query }) => {
      const q = query as EventsQuery;
      return pageOf(await audit.list(tenantScope(ctx), filtersOf(q), { limit: q.limit, cursor: q.cursor }));
    },
    'users events': async (ctx, { params, query }) => {
      const q = query as EventsQuery;
      return pageOf(await audit.listForUser(tenantScope(ctx), params.id!, filtersOf(q), { limit: q.limit, cursor: q.cursor }));
    },
  };
}
