import type { Knex } from 'knex';
import { affectedRows, hasNul } from '../infra/db.ts';

/** The WebAuthn part of a webauthn factor (migration 0010); the factor row holds its name and dates. */
export interface CredentialRow {
  factor_id: string;
  user_id: string;
  /** base64url. */
  credential_id: string;
  /** base64url of the COSE key. */
  public_key: string;
  sign_count: number;
  /** Comma-separated transports. */
  transports: string;
  /** A passkey: discoverable, registered with user verification; it signs in without a password. */
  discoverable: boolean;
  backed_up: boolean;
  /** singleDevice | multiDevice. */
  device_type: string;
  aaguid: string;
}

/** A credential with its factor's name and dates (confirmed factors only). */
export interface CredentialWithFactor extends CredentialRow {
  name: string;
  confirmed_at: Date;
  last_used_at: Date | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const COLUMNS = ['c.*', 'f.name', 'f.confirmed_at', 'f.last_used_at'];

// bigint comes back from pg as text.
const normal = (row: CredentialWithFactor | undefined): CredentialWithFactor | undefined =>
  row && { ...row, sign_count: Number(row.sign_count) };

/** webauthn_credentials, read with their mfa_factors row; a removed factor takes its credential with it (cascade). */
export function createWebAuthnCredentialsRepo(db: Knex) {
  const joined = () =>
    db('webauthn_credentials as c')
      .join('mfa_factors as f', 'f.id', 'c.factor_id')
      .where('f.type', 'webauthn')
      .whereNotNull('f.confirmed_at')
      .select(COLUMNS);

  return {
    async insert(row: CredentialRow, trx: Knex.Transaction): Promise<void> {
      await trx('webauthn_credentials').insert(row);
    },

    /** The user's credentials, oldest first. */
    async listOfUser(userId: string): Promise<CredentialWithFactor[]> {
      if (!UUID.test(userId)) return [];
      const rows = (await joined().where('c.user_id', userId).orderBy('f.confirmed_at', 'asc')) as CredentialWithFactor[];
      return rows.map((r) => normal(r)!);
    },

    /** Whoever's credential this id is (a passkey sign-in learns its account from it). */
    async findByCredentialId(credentialId: string): Promise<CredentialWithFactor | undefined> {
      if (hasNul(credentialId) || credentialId.length > 1024) return undefined;
      return normal((await joined().where('c.credential_id', credentialId).first()) as CredentialWithFactor | undefined);
    },

    /**
     * Moves the counter from `from` to `to` after a verified assertion, once: of two concurrent uses
     * that read the same counter only one updates it (the other is refused like a cloned key).
     */
    async advanceCounter(factorId: string, from: number, to: number, backedUp: boolean): Promise<boolean> {
      return affectedRows(
        await db('webauthn_credentials').where({ factor_id: factorId, sign_count: from }).update({ sign_count: to, backed_up: backedUp }),
      ) === 1;
    },
  };
}

export type WebAuthnCredentialsRepo = ReturnType<typeof createWebAuthnCredentialsRepo>;
