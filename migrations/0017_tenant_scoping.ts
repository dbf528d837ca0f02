import type { Knex } from 'knex';

// Every admin listing and the audit trail now read one tenant's rows: the audit pages walk a
// tenant's events by seq (newest first), the other lists a tenant's rows by their key.
export async function up(knex: Knex): Promise<void> {
  await knex.raw('create index events_tenant_seq on events (tenant_id, seq)');
  await knex.raw('create index clients_tenant on clients (tenant_id, created_at, client_id)');
  await knex.raw('create index resource_servers_tenant on resource_servers (tenant_id, created_at, id)');
  await knex.raw('create index webhooks_tenant on webhooks (tenant_id, created_at, id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop index if exists webhooks_tenant');
  await knex.raw('drop index if exists resource_servers_tenant');
  await knex.raw('drop index if exists clients_tenant');
  await knex.raw('drop index if exists events_tenant_seq');
}
