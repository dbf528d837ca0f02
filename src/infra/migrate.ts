import type { Knex } from 'knex';
import * as core from '../../migrations/0001_core.ts';
import * as idempotency from '../../migrations/0002_idempotency.ts';
import * as events from '../../migrations/0003_events.ts';
import * as outbox from '../../migrations/0004_outbox.ts';
import * as accountLifecycle from '../../migrations/0005_account_lifecycle.ts';
import * as unverifiedOwnerPassword from '../../migrations/0006_unverified_owner_password.ts';

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
  '0006_unverified_owner_password': unverifiedOwnerPassword,
};

const source: Knex.MigrationSource<string> = {
  getMigrations: async () => Object.keys(migrations),
  getMigrationName: (name) => name,
  getMigration: async (name) => migrations[name] as Migration,
};

export async function migrateLatest(db: Knex): Promise<string[]> {
  const [, applied] = (await db.migrate.latest({ migrationSource: source })) as [number, string[]];
  return applied;
}
