import { z } from 'zod';
import type { RecordedEvent } from '../../domain/events/events.ts';

// GET /audit/events and GET /users/:id/events: the query they take and the page they answer.

const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** An ISO 8601 instant: a date-time with its offset, or a date (midnight UTC). */
export function instantOf(text: string): Date | undefined {
  const isDate = DATE.test(text);
  if (!isDate && !DATE_TIME.test(text)) return undefined;
  // Date.parse rolls 2026-02-30 over to March: the calendar date must name itself.
  const day = text.slice(0, 10);
  const midnight = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(midnight.getTime()) || midnight.toISOString().slice(0, 10) !== day) return undefined;
  const date = new Date(isDate ? `${day}T00:00:00Z` : text);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

const instant = (what: string) =>
  z.string().max(64)
    .refine((v) => instantOf(v) !== undefined, 'must be an ISO 8601 date-time with an offset (2026-01-31T08:00:00Z, 2026-01-31T15:00:00+07:00) or a date (2026-01-31: midnight UTC)')
    .describe(what);

const typeList = z.string().max(2000)
  .describe('Event types, comma-separated; a last segment * matches every type under it: user.created,user.updated or user.*');

const eventsQueryBase = z.object({
  type: typeList.optional(),
  from: instant('Events at or after this instant (ISO 8601)').optional(),
  to: instant('Events before this instant (ISO 8601)').optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50).describe('Events per page, 1-200 (default 50)'),
  cursor: z.string().max(200).optional().describe("The previous page's nextCursor, with the same filters"),
});

export const auditEventsQuery = eventsQueryBase.extend({
  actor: z.string().max(300).optional()
    .describe('Who caused it: <type>:<id> (client:admin, user:<uuid>), a type alone (system, client) or an id of any type'),
  target: z.string().max(300).optional()
    .describe('What it is about: <type>:<id> (user:<uuid>, client:my-app), a type alone (user) or an id of any type'),
});

export const userEventsQuery = eventsQueryBase;

const party = z.object({ type: z.string(), id: z.string().nullable() });

export const auditEvent = z.object({
  id: z.uuid(),
  type: z.string(),
  occurredAt: z.iso.datetime(),
  actor: party.describe('Who caused it: a user, a client (an admin API caller, a relying party), an identity provider, or the system (id null)'),
  target: z.object({ type: z.string(), id: z.string() }).nullable().describe('What it is about; null when nothing in particular'),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  requestId: z.string().nullable(),
  data: z.record(z.string(), z.unknown()).describe('What happened, by type; never a secret, code or token'),
});

export const auditPage = z.object({
  data: z.array(auditEvent).describe('Newest first'),
  nextCursor: z.string().nullable().describe('Pass as cursor for the next (older) page; null on the last page'),
});

/** One event as the audit API and the live stream show it. */
export function auditEventView(e: RecordedEvent) {
  return {
    id: e.id,
    type: e.type,
    occurredAt: new Date(e.occurredAt).toISOString(),
    actor: e.actor,
    target: e.target,
    ip: e.ip,
    userAgent: e.userAgent,
    requestId: e.requestId,
    data: e.data,
  };
}
