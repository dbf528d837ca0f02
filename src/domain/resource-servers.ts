import { randomUUID } from 'node:crypto';
import type { EphemeralStore } from '../infra/ephemeral/index.ts';
import { createSharedCache } from '../infra/shared-cache.ts';
import type { ResourceServerRow, ResourceServersRepo } from '../repos/resource-servers.ts';

export interface ResourceServerInfo {
  identifier: string;
  scopes: string[];
  accessTokenFormat: 'jwt' | 'opaque';
  accessTokenTtl: number | undefined;
}

function toInfo(row: ResourceServerRow): ResourceServerInfo {
  return {
    identifier: row.identifier,
    scopes: row.scopes,
    accessTokenFormat: row.access_token_format,
    accessTokenTtl: row.access_token_ttl ?? undefined,
  };
}

export function createResourceServers(deps: { repo: ResourceServersRepo; ephemeral: EphemeralStore }) {
  // Read on every token request that names a resource; changes are broadcast to every instance.
  const cache = createSharedCache<ResourceServerInfo>({
    name: 'resource-servers',
    ttlMs: 10_000,
    ephemeral: deps.ephemeral,
    load: async (identifier) => {
      const row = await deps.repo.findByIdentifier(identifier);
      return row && toInfo(row);
    },
  });
  return {
    find(identifier: string): Promise<ResourceServerInfo | undefined> {
      return cache.get(identifier);
    },
    async create(input: {
      identifier: string;
      name?: string;
      scopes: string[];
      accessTokenFormat?: 'jwt' | 'opaque';
      accessTokenTtl?: number;
    }): Promise<ResourceServerInfo> {
      const row = await deps.repo.insert({
        id: randomUUID(),
        identifier: input.identifier,
        name: input.name ?? null,
        scopes: input.scopes,
        access_token_format: input.accessTokenFormat ?? 'jwt',
        access_token_ttl: input.accessTokenTtl ?? null,
      });
      await cache.invalidate(row.identifier);
      return toInfo(row);
    },
  };
}

export type ResourceServers = ReturnType<typeof createResourceServers>;
