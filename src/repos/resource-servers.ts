import type { Knex } from 'knex';
import { hasNul } from '../infra/db.ts';

export interface ResourceServerRow {
  id: string;
  tenant_id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  access_token_format: 'jwt' | 'opaque';
  access_token_ttl: number | null;
  created_at: Date;
  updated_at: Date;
}

export function createResourceServersRepo(db: Knex) {
  const table = () => db<ResourceServerRow>('resource_servers');
  return {
    async findByIdentifier(identifier: string): Promise<ResourceServerRow | undefined> {
      if (hasNul(identifier)) return undefined;
      return table().where({ identifier }).first();
    },
    async insert(
      row: Pick<ResourceServerRow, 'id' | 'identifier' | 'scopes'> & Partial<ResourceServerRow>,
    ): Promise<ResourceServerRow> {
      const [out] = await table()
        .insert({ ...row, scopes: JSON.stringify(row.scopes) as never })
        .returning('*');
      return out as ResourceServerRow;
    },
  };
}

export type ResourceServersRepo = ReturnType<typeof createResourceServersRepo>;
