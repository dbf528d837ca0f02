import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';

/** The stored factor types (migration 0009): every WebAuthn credential is a factor of its own; the others one per user. */
export const FACTOR_TYPES = ['totp', 'recovery', 'webauthn', 'sms', 'email'] as const;
export type FactorType = (typeof FACTOR_TYPES)[number];

export interface FactorRow {
  id: string;
  tenant_id: string;
  user_id: string;
  type: FactorType;
  name: string;
  /** SecretBox-sealed TOTP secret (AAD names the factor); null for recovery codes. */
  secret_sealed: string | null;
  /** The E.164 number of an SMS factor (migration 0011); null for every other type. */
  phone: string | null;
  confirmed_at: Date | null;
  created_at: Date;
  last_used_at: Date | null;
}

export type NewFactor = Pick<FactorRow, 'id' | 'tenant_id' | 'user_id' | 'type' | 'name' | 'secret_sealed'> & Partial<Pick<FactorRow, 'confirmed_at' | 'phone'>>;

/** A factor row as PostgreSQL's JSON gives it (timestamps as text), typed again. */
export function factorFromJson(json: Record<string, unknown>): FactorRow {
  const row = { ...json } as Record<string, unknown>;
  for (const column of ['confirmed_at', 'created_at', 'last_used_at']) {
    if (typeof row[column] === 'string') row[column] = new Date(row[column] as string);
  }
  return row as unknown as FactorRow;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** mfa_factors and mfa_recovery_codes. Every lookup is scoped to the user: another user's factor is never found. */
export function createMfaFactorsRepo(db: Knex) {
  const factors = (trx?: Knex.Transaction) => (trx ?? db)<FactorRow>('mfa_factors');
  const codes = (trx?: Knex.Transaction) => (trx ?? db)('mfa_recovery_codes');
  return {
    async insert(row: NewFactor, trx?: Knex.Transaction): Promise<FactorRow> {
      const [out] = await factors(trx).insert(row).returning('*');
      return out as FactorRow;
    },

    /** A factor of the user, confirmed or not. */
    async find(userId: string, id: string, trx?: Knex.Transaction): Promise<FactorRow | undefined> {
      // Ids are UUIDs; anything else cannot exist and must not reach PostgreSQL as a cast error.
      if (!UUID.test(id) || !UUID.test(userId)) return undefined;
      return factors(trx).where({ id, user_id: userId }).first();
    },

    async listConfirmed(userId: string): Promise<FactorRow[]> {
      if (!UUID.test(userId)) return [];
      return factors().where({ user_id: userId }).whereNotNull('confirmed_at').orderBy('confirmed_at', 'asc');
    },

    /** The user's confirmed factors, locked until `trx` ends: a change that must see them all at once. */
    async lockConfirmed(userId: string, trx: Knex.Transaction): Promise<FactorRow[]> {
      if (!UUID.test(userId)) return [];
      return factors(trx).where({ user_id: userId }).whereNotNull('confirmed_at').forUpdate();
    },

    async confirmedOfType(userId: string, type: FactorType): Promise<FactorRow | undefined> {
      if (!UUID.test(userId)) return undefined;
      return factors().where({ user_id: userId, type }).whereNotNull('confirmed_at').first();
    },

    /** Drops the user's pending (unconfirmed) enrollments of a type: a new enrollment replaces them. */
    async deleteUnconfirmed(userId: string, type: FactorType, trx?: Knex.Transaction): Promise<number> {
      return affectedRows(await factors(trx).where({ user_id: userId, type }).whereNull('confirmed_at').delete());
    },

    /**
     * Confirms a pending enrollment that is younger than `maxAgeSeconds`, once: of two concurrent
     * confirmations only one finds it unconfirmed.
     */
    async confirm(userId: string, id: string, maxAgeSeconds: number, trx?: Knex.Transaction): Promise<FactorRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await factors(trx)
        .where({ id, user_id: userId })
        .whereNull('confirmed_at')
        .where('created_at', '>', db.raw('now() - make_interval(secs => ?)', [maxAgeSeconds]))
        .update({ confirmed_at: db.fn.now(), last_used_at: db.fn.now() } as never)
        .returning('*');
      return row as FactorRow | undefined;
    },

    /** Deletes the user's confirmed factors of `type` other than `exceptId` (their codes go with them); returns them. */
    async deleteConfirmedOfType(userId: string, type: FactorType, exceptId: string | undefined, trx?: Knex.Transaction): Promise<FactorRow[]> {
      const q = factors(trx).where({ user_id: userId, type }).whereNotNull('confirmed_at');
      if (exceptId) q.whereNot({ id: exceptId });
      return (await q.delete().returning('*')) as FactorRow[];
    },

    /** Deletes one confirmed factor of the user (a recovery set with its codes). */
    async deleteConfirmed(userId: string, id: string, trx?: Knex.Transaction): Promise<FactorRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await factors(trx).where({ id, user_id: userId }).whereNotNull('confirmed_at').delete().returning('*');
      return row as FactorRow | undefined;
    },

    /** Deletes every factor of the user, confirmed or pending (recovery codes go with their set); returns them. */
    async deleteAllOfUser(userId: string, trx?: Knex.Transaction): Promise<FactorRow[]> {
      if (!UUID.test(userId)) return [];
      return (await factors(trx).where({ user_id: userId }).delete().returning('*')) as FactorRow[];
    },

    async touch(id: string): Promise<void> {
      await factors().where({ id }).update({ last_used_at: db.fn.now() } as never);
    },

    async insertRecoveryCodes(factorId: string, userId: string, digests: string[], trx?: Knex.Transaction): Promise<void> {
      await codes(trx).insert(digests.map((code_digest) => ({ factor_id: factorId, user_id: userId, code_digest })));
    },

    /**
     * Uses a recovery code, once, in one statement: of concurrent uses of one code only one
     * updates the row. Only codes of the user's confirmed set count. Returns the set's factor id.
     */
    async useRecoveryCode(userId: string, digest: string): Promise<string | undefined> {
      if (!UUID.test(userId)) return undefined;
      const [row] = await codes()
        .where({ user_id: userId, code_digest: digest })
        .whereNull('used_at')
        .whereIn('factor_id', factors().select('id').where({ user_id: userId, type: 'recovery' }).whereNotNull('confirmed_at'))
        .update({ used_at: db.fn.now() })
        .returning('factor_id');
      return (row as { factor_id: string } | undefined)?.factor_id;
    },

    /** Unused codes of a recovery set. */
    async remainingRecoveryCodes(factorId: string): Promise<number> {
      const row = await codes().where({ factor_id: factorId }).whereNull('used_at').count<{ n: string | number }[]>({ n: '*' }).first();
      return Number(row?.n ?? 0);
    },

    /** Deletes enrollments never confirmed within `maxAgeSeconds` (the sweeper's schedule). */
    async sweepUnconfirmed(maxAgeSeconds: number): Promise<number> {
      return affectedRows(
        await factors()
          .whereNull('confirmed_at')
          .where('created_at', '<', db.raw('now() - make_interval(secs => ?)', [maxAgeSeconds]))
          .delete(),
      );
    },
  };
}

export type MfaFactorsRepo = ReturnType<typeof createMfaFactorsRepo>;
