// Knex's PostgreSQL dialect client, subclassed by db.ts; knex publishes no types for the path.
declare module 'knex/lib/dialects/postgres/index.js' {
  import type { Knex } from 'knex';
  const ClientPg: typeof Knex.Client;
  export default ClientPg;
}
