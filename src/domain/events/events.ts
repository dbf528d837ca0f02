import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { EventsRepo } from '../../repos/events.ts';
import type { UserRow } from '../../repos/users.ts';

/** The domain events of the account lifecycle (names from the lifecycle issue). */
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
  | 'user.signed_out';

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

export interface EventInput {
  type: EventType;
  subjectId?: string | null;
  tenantId?: string;
  actor?: string | null;
  requestId?: string | null;
  payload: Record<string, unknown>;
}

export function createEventRecorder(repo: EventsRepo) {
  return {
    /** Records an event; pass `trx` to commit it with the change it describes. */
    async record(event: EventInput, trx?: Knex.Transaction): Promise<void> {
      await repo.insert(
        {
          id: randomUUID(),
          type: event.type,
          tenant_id: event.tenantId ?? 'default',
          subject_id: event.subjectId ?? null,
          actor: event.actor ?? null,
          request_id: event.requestId ?? null,
          payload: event.payload,
        },
        trx,
      );
    },
  };
}

export type EventRecorder = ReturnType<typeof createEventRecorder>;
