import type { Knex } from 'knex';
import type { AccountLinks } from './account-links.ts';
import type { EventRecorder } from '../events/events.ts';
import type { MailOutbox } from '../mail/mail.ts';
import type { OneTimeCodes } from '../authn/one-time-codes.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';

/** What every account flow (registration, verification, reset, magic link) is built from. */
export interface FlowServices {
  users: UsersRepo;
  codes: OneTimeCodes;
  mail: MailOutbox;
  events: EventRecorder;
  links: AccountLinks;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  /** Where detached work (see detached.ts) reports failures. */
  onBackgroundError: (err: unknown) => void;
}

/** One-time-code identifiers for email flows: tenant and lower-cased address. */
export function emailIdentifier(tenantId: string, email: string): string {
  return `${tenantId}:${email.trim().toLowerCase()}`;
}

/** The tenant and address an email identifier names (tenant ids hold no colon; addresses may). */
export function parseEmailIdentifier(identifier: string): { tenantId: string; email: string } {
  const separator = identifier.indexOf(':');
  return { tenantId: identifier.slice(0, separator), email: identifier.slice(separator + 1) };
}

/** The user an email identifier names, when there is one. */
export function findUserByIdentifier(users: UsersRepo, identifier: string): Promise<UserRow | undefined> {
  const { tenantId, email } = parseEmailIdentifier(identifier);
  return users.findByEmail(tenantId, email);
}
