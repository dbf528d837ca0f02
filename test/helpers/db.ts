import { randomBytes } from 'node:crypto';
import { SecretBox } from '../../src/infra/crypto.ts';
import { createDb, type Db } from '../../src/infra/db.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { createAdapterFactory, DIGESTED_MODELS } from '../../src/oidc/adapter.ts';
import { createClientsRepo, type ClientsRepo } from '../../src/repos/clients.ts';
import { createOidcPayloadsRepo, type OidcPayloadsRepo } from '../../src/repos/oidc-payloads.ts';
import { createTestStore, type TestStore } from './server.ts';

export interface TestDb {
  db: Db;
  store: TestStore;
  payloads: OidcPayloadsRepo;
  clients: ClientsRepo;
  adapterFor: ReturnType<typeof createAdapterFactory>;
  /** The id a model's row is stored under: a keyed digest for bearer tokens, the id itself otherwise. */
  storedId(model: string, id: string): string;
  destroy(): Promise<void>;
}

/**
 * A migrated database of its own for one test file, with the repositories and the oidc-provider
 * adapter factory on top: PGlite in a temporary directory, or a fresh PostgreSQL database when
 * DATABASE_URL is set.
 */
export async function createTestDb(): Promise<TestDb> {
  const store = await createTestStore();
  const db = createDb({ databaseUrl: store.env.DATABASE_URL, dataDir: store.dataDir, poolMax: 5 });
  try {
    await migrateLatest(db);
  } catch (err) {
    await db.destroy();
    await store.destroy();
    throw err;
  }
  const payloads = createOidcPayloadsRepo(db);
  const clients = createClientsRepo(db);
  const box = new SecretBox(randomBytes(32));
  const digest = (value: string) => box.digest(value, 'oidc-token-id');
  return {
    db,
    store,
    payloads,
    clients,
    adapterFor: createAdapterFactory({ payloads, clients, digest }),
    storedId: (model, id) => (DIGESTED_MODELS.has(model) ? digest(id) : id),
    async destroy() {
      await db.destroy();
      await store.destroy();
    },
  };
}

/**
 * Every row of every table of the public schema as text: what a dump of the database would hold
 * (used where pg_dump cannot reach, i.e. on the embedded store).
 */
export async function allRowsAsText(db: Db): Promise<string> {
  const tables = (await db('pg_tables').select('tablename').where({ schemaname: 'public' })) as Array<{ tablename: string }>;
  let out = '';
  for (const { tablename } of tables) {
    const rows = (await db.raw(`select t::text as row from "${tablename}" t`)) as { rows: Array<{ row: string }> };
    for (const { row } of rows.rows) out += `${tablename}: ${row}\n`;
  }
  return out;
}
