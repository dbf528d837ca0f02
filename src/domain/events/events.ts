import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { EventRow, EventsRepo, NewEventRow } from '../../repos/events.ts';
import { currentRequestScope } from '../../infra/request-scope.ts';
import type { UserRow } from '../../repos/users.ts';

/**
 * The event catalogue (README "Events"): every change records one of these in the transaction of
 * the change. Dotted lower case: the kind of thing, then what happened to it.
 */
export type EventType =
  | 'user.created'
  | 'user.email_verified'
  | 'user.credentials_reset'
  | 'user.password_reset_requested'
  | 'user.password_reset'
  | 'user.password_changed'
  | 'user.updated'
  | 'user.deleted'
  | 'user.locked'
  | 'user.signed_in'
  | 'user.sign_in_failed'
  | 'user.mfa_enrolled'
  | 'user.mfa_removed'
  | 'user.mfa_reset'
  | 'user.mfa_login'
  | 'user.unlocked'
  | 'user.identity_linked'
  | 'user.identity_unlinked'
  | 'user.signed_out'
  | 'user.suspended'
  | 'user.reactivated'
  | 'user.session_revoked'
  | 'user.signed_out_everywhere'
  | 'user.verification_resent'
  | 'user.merged'
  | 'client.created'
  | 'client.updated'
  | 'client.secret_rotated'
  | 'client.deleted'
  | 'resource_server.created'
  | 'resource_server.updated'
  | 'resource_server.deleted'
  | 'identity_provider.created'
  | 'identity_provider.updated'
  | 'identity_provider.deleted'
  | 'key.rotated'
  | 'api_key.created'
  | 'api_key.rotated'
  | 'api_key.revoked'
  | 'webhook.disabled'
  | 'role.created'
  | 'role.updated'
  | 'role.deleted'
  | 'user.roles_changed'
  | 'service_account.created'
  | 'service_account.secret_rotated'
  | 'service_account.roles_changed'
  | 'service_account.deleted'
  | 'tenant.created'
  | 'tenant.updated'
  | 'tenant.deleted';

/**
 * The user part of a payload, with the reference catalogue's field names (id, email, firstName,
 * lastName, status). Never a password hash or a secret.
 */
export function userPayload(user: UserRow) {
  return {
    id: user.id,
    email: user.email,
    emailVerified: user.email_verified,
    firstName: user.given_name,
    lastName: user.family_name,
    locale: user.locale,
    status: user.status,
  };
}

/** Who caused an event: a signed-in user, a client (admin API caller, relying party), an admin API key, or the system. */
export interface Actor {
  type: 'user' | 'client' | 'system' | 'identity_provider' | 'api_key';
  id: string | null;
}

/** What an event is about. */
export interface Target {
  type: 'user' | 'client' | 'resource_server' | 'identity_provider' | 'key' | 'session' | 'webhook' | 'api_key' | 'role' | 'service_account' | 'tenant';
  id: string;
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: null };
export const userActor = (id: string): Actor => ({ type: 'user', id });
export const clientActor = (clientId: string): Actor => ({ type: 'client', id: clientId });
/** An admin API key, by its id (a change made through the admin API with the key). */
export const apiKeyActor = (id: string): Actor => ({ type: 'api_key', id });
/** An upstream identity provider, by its alias (a SAML single logout it started). */
export const identityProviderActor = (alias: string): Actor => ({ type: 'identity_provider', id: alias });

export interface EventInput {
  type: EventType;
  /** The user the event is about; without an explicit target it is also the target. */
  subjectId?: string | null;
  target?: Target;
  tenantId?: string;
  /** Who acted; without one, the system (a sweeper, a local CLI command). */
  actor?: Actor | null;
  requestId?: string | null;
  payload: Record<string, unknown>;
}

/** An event as stored: what sinks and readers see. Never carries a secret, code or token. */
export interface RecordedEvent {
  id: string;
  seq: string;
  type: EventType;
  tenantId: string;
  occurredAt: Date;
  actor: Actor;
  target: Target | null;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  data: Record<string, unknown>;
}

/**
 * Runs inside the recording transaction (when the caller gave one): what it writes commits or rolls
 * back with the event (a webhook delivery queued in the event's transaction).
 */
export type TransactionalSink = (event: RecordedEvent, trx: Knex.Transaction | undefined) => Promise<void>;
/** Runs once the event is committed (live streams); its failure never reaches the recorder's caller. */
export type CommittedListener = (event: RecordedEvent) => void;

const actorOf = (actor: EventInput['actor']): Actor => actor ?? SYSTEM_ACTOR;

export function createEventRecorder(repo: EventsRepo) {
  const sinks: TransactionalSink[] = [];
  const listeners: CommittedListener[] = [];
  const announce = (event: RecordedEvent) => {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        // A listener's fault is its own: the change is committed.
      }
    }
  };
  return {
    /**
     * Records an event; pass `trx` to commit it with the change it describes. The request's address,
     * user agent and id come from the request scope when the caller does not name them.
     */
    async record(event: EventInput, trx?: Knex.Transaction): Promise<void> {
      const scope = currentRequestScope();
      const target = event.target ?? (event.subjectId ? { type: 'user' as const, id: event.subjectId } : null);
      const row: NewEventRow = {
        id: randomUUID(),
        type: event.type,
        tenant_id: event.tenantId ?? 'default',
        subject_id: event.subjectId ?? (target?.type === 'user' ? target.id : null),
        actor_type: actorOf(event.actor).type,
        actor_id: actorOf(event.actor).id,
        target_type: target?.type ?? null,
        target_id: target?.id ?? null,
        ip: scope?.ip ?? null,
        user_agent: scope?.userAgent || null,
        request_id: event.requestId ?? scope?.requestId ?? null,
        payload: event.payload,
      };
      const stored = await repo.insert(row, trx);
      const recorded = toRecordedEvent({ ...row, ...stored });
      for (const sink of sinks) await sink(recorded, trx);
      if (!listeners.length) return;
      if (trx) trx.executionPromise.then(() => announce(recorded), () => {});
      else announce(recorded);
    },
    /** Adds work that must commit with every event (called at wiring time, not per request). */
    addSink(sink: TransactionalSink): void {
      sinks.push(sink);
    },
    onCommitted(listener: CommittedListener): void {
      listeners.push(listener);
    },
  };
}

export function toRecordedEvent(row: EventRow): RecordedEvent {
  return {
    id: row.id,
    seq: String(row.seq),
    type: row.type as EventType,
    tenantId: row.tenant_id,
    occurredAt: row.occurred_at,
    actor: { type: row.actor_type as Actor['type'], id: row.actor_id },
    target: row.target_type && row.target_id ? { type: row.target_type as Target['type'], id: row.target_id } : null,
    ip: row.ip,
    userAgent: row.user_agent,
    requestId: row.request_id,
    data: row.payload,
  };
}

export type EventRecorder = ReturnType<typeof createEventRecorder>;
