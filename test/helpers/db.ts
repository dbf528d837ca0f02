import { createDb, type Db } from '../../src/infra/db.ts';
import { migrateLatest } from '../../src/infra/migrate.ts';
import { createAdapterFactory } from '../../src/oidc/adapter.ts';
import { createClientsRepo, type ClientsRepo } from '../../src/repos/clients.ts';
import { createOidcPayloadsRepo, type OidcPayloadsRepo } from '../../src/repos/oidc-payloads.ts';
import { createTestStore, type TestStore } from './server.ts';

export interface TestDb {
  db: Db;
  store: TestStore;
  payloads: OidcPayloadsRepo;
  clients: ClientsRepo;
  adapterFor: ReturnType<typeof createAdapterFactory>;
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
  return {
    db,
    store,
    payloads,
    clients,
    adapterFor: createAdapterFactory({ payloads, clients }),
    async destroy() {
      await db.destroy();
      await store.destroy();
    },
  };
}
