import type { Knex } from 'knex';
import pg from 'pg';
import type { Db } from './db.ts';
import * as core from '../../migrations/0001_core.ts';
import * as idempotency from '../../migrations/0002_idempotency.ts';
import * as events from '../../migrations/0003_events.ts';
import * as outbox from '../../migrations/0004_outbox.ts';
import * as accountLifecycle from '../../migrations/0005_account_lifecycle.ts';
import * as digestedTokenIds from '../../migrations/0006_digested_token_ids.ts';
import * as unverifiedOwnerPassword from '../../migrations/0007_unverified_owner_password.ts';
import * as mfaFactors from '../../migrations/0008_mfa_factors.ts';
import * as factorTypes from '../../migrations/0009_factor_types.ts';
import * as webauthnCredentials from '../../migrations/0010_webauthn_credentials.ts';
import * as phoneFactors from '../../migrations/0011_phone_factors.ts';
import * as federation from '../../migrations/0012_federation.ts';
import * as samlSpKeys from '../../migrations/0013_saml_sp_keys.ts';
import * as auditEvents from '../../migrations/0014_audit_events.ts';
import * as webhooks from '../../migrations/0015_webhooks.ts';
import * as tenantsAndRoles from '../../migrations/0016_tenants_and_roles.ts';
import * as tenantScoping from '../../migrations/0017_tenant_scoping.ts';
import * as globalIdpAliases from '../../migrations/0018_global_identity_provider_aliases.ts';
import * as rbacServiceAccounts from '../../migrations/0019_rbac_service_accounts.ts';
import * as apiKeys from '../../migrations/0020_api_keys.ts';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

// An explicit list rather than a directory scan, so the same migrations run from the TypeScript
// sources (tests) and from the compiled output (npm start) without path juggling.
const migrations: Record<string, Migration> = {
  '0001_core': core,
  '0002_idempotency': idempotency,
  '0003_events': events,
  '0004_outbox': outbox,
  '0005_account_lifecycle': accountLifecycle,
  '0006_digested_token_ids': digestedTokenIds,
  '0007_unverified_owner_password': unverifiedOwnerPassword,
  '0008_mfa_factors': mfaFactors,
  '0009_factor_types': factorTypes,
  '0010_webauthn_credentials': webauthnCredentials,
  '0011_phone_factors': phoneFactors,
  '0012_federation': federation,
  '0013_saml_sp_keys': samlSpKeys,
  '0014_audit_events': auditEvents,
  '0015_webhooks': webhooks,
  '0016_tenants_and_roles': tenantsAndRoles,
  '0017_tenant_scoping': tenantScoping,
  '0018_global_identity_provider_aliases': globalIdpAliases,
  '0019_rbac_service_accounts': rbacServiceAccounts,
  '0020_api_keys': apiKeys,
};

/**
 * On PostgreSQL each migration runs in its own transaction without the statement deadline that
 * serves requests: building an index over millions of rows may rightly take minutes.
 */
function withoutStatementTimeout(migration: Migration): Migration {
  // Harmless on PGlite, which has no deadline to lift.
  const lift = (knex: Knex) => knex.raw('set local statement_timeout = 0');
  return {
    up: async (knex) => (await lift(knex), migration.up(knex)),
    down: async (knex) => (await lift(knex), migration.down(knex)),
  };
}

const source: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations),
  getMigrationName: (name) => name,
  getMigration: async (name) => withoutStatementTimeout(migrations[name] as Migration),
};

// Any constant of our own, distinct from the sweeper's and the key generation's.
const MIGRATION_LOCK = 0x1d9_3a1;

async function latest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource: source })) as [number, string[]];
  return applied;
}

/**
 * Instances booting together on one empty PostgreSQL database would both create knex's own
 * bookkeeping tables and collide (knex's migration lock lives in one of them). A session advisory
 * lock, held on a connection of its own outside the pool (so DB_POOL_MAX=1 still works), makes
 * them take turns; the second then finds nothing to do. PGlite is one process: no lock needed.
 */
export async function migrateLatest(db: Db): Promise<string[]> {
  if (db.kind !== 'postgres') return latest(db);
  // Knex keeps DATABASE_URL parsed into pg's own connection settings. Waiting for another
  // instance's migrations may take longer than any statement deadline.
  const connection = db.client.config.connection as string | pg.ClientConfig;
  const settings = typeof connection === 'string' ? { connectionString: connection } : connection;
  const lock = new pg.Client({ ...settings, statement_timeout: 0, query_timeout: 0, idle_in_transaction_session_timeout: 0 });
  await lock.connect();
  try {
    await lock.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    return await latest(db);
  } finally {
    // Ending the session releases its advisory lock.
    await lock.end();
  }
}
