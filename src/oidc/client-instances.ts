import type Provider from 'oidc-provider';
import type { ClientSource } from './adapter.ts';

type ClientRecord = NonNullable<Awaited<ReturnType<ClientSource['find']>>>;
type ClientInstance = NonNullable<Awaited<ReturnType<Provider['Client']['find']>>>;

/**
 * The provider turns the adapter's record into a Client on every lookup (two per introspection):
 * it serialises and SHA-256-hashes the record to find the instance in a 100-entry LRU, and past
 * 100 clients validates the whole schema again. The registry's shared cache hands out one record
 * object per client until the record changes anywhere (the change is broadcast and drops it) or
 * its TTL ends, so the instance built from a record is kept with that record: a changed or
 * reloaded record is a new object, and the next lookup builds from it.
 */
export function keepClientInstancesPerRecord(provider: Provider, records: Pick<ClientSource, 'find'>): void {
  const Client = provider.Client;
  const build = Client.find.bind(Client);
  const built = new WeakMap<ClientRecord, ClientInstance>();
  Object.defineProperty(Client, 'find', {
    configurable: true,
    writable: true,
    value: async function find(id: string): Promise<ClientInstance | undefined> {
      if (typeof id !== 'string' || !id) return build(id);
      const record = await records.find(id);
      if (!record) return build(id);
      const known = built.get(record);
      if (known) return known;
      const client = await build(id);
      if (client) built.set(record, client);
      return client;
    },
  });
}
