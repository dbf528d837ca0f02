import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import type { SecretBox } from '../../infra/crypto.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import { createSharedCache } from '../../infra/shared-cache.ts';
import type { ClientRow, ClientsRepo } from '../../repos/clients.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import { assertGrantsDefined, grantedScopes, RESOURCE_SCOPES, type ResourceScopes } from './resource-grants.ts';
import type { ResourceServers } from './resource-servers.ts';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { EventRecorder } from '../events/events.ts';
import { assertInTenant, DEFAULT_TENANT_ID, isPlatformScope, type TenantScope } from '../tenants/tenant-scope.ts';

export const CLIENT_SECRET_PURPOSE = 'client-secret';

export interface ClientInput {
  metadata: Record<string, unknown> & { client_id?: string; client_secret?: string };
  firstParty?: boolean;
}

/** Work that commits with a client's creation or deletion (a service account's own row and event). */
export type AlsoInTransaction = (trx: Knex.Transaction) => Promise<void>;

/** Generated secrets carry 256 bits of entropy, so a keyed digest is as strong as a slow hash. */
export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function needsSecret(metadata: Record<string, unknown>): boolean {
  const method = (metadata.token_endpoint_auth_method as string | undefined) ?? 'client_secret_basic';
  return method === 'client_secret_basic' || method === 'client_secret_post' || method === 'client_secret_jwt';
}

/**
 * The client as its events carry it: what identifies and describes it, never its secret (nor its
 * digest or sealed form).
 */
export function clientPayload(row: Pick<ClientRow, 'client_id' | 'metadata' | 'first_party'>) {
  const m = row.metadata as Record<string, unknown>;
  return {
    id: row.client_id,
    name: (m.client_name as string | undefined) ?? null,
    firstParty: row.first_party,
    tokenEndpointAuthMethod: (m.token_endpoint_auth_method as string | undefined) ?? 'client_secret_basic',
    grantTypes: (m.grant_types as string[] | undefined) ?? ['authorization_code'],
    redirectUris: (m.redirect_uris as string[] | undefined) ?? [],
    scope: (m.scope as string | undefined) ?? null,
  };
}

/** The metadata fields whose values differ (the names only; a secret never is one of them). */
function changedFields(before: Record<string, unknown>, after: Record<string, unknown>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((n) => JSON.stringify(before[n]) !== JSON.stringify(after[n])).sort();
}

/** Columns of a client with no previous secret in force. */
const NO_PREVIOUS_SECRET = { previous_secret_digest: null, previous_secret_expires_at: null };

/** How long an instance may serve a client record it read, should an invalidation be lost. */
const CACHE_TTL_MS = 10_000;

export interface ClientRegistryDeps {
  repo: ClientsRepo;
  box: SecretBox;
  ephemeral: EphemeralStore;
  /** Where a deleted client's grants and tokens are revoked. */
  payloads: Pick<OidcPayloadsRepo, 'revokeByClientId'>;
  /** Where the resource servers a client's resource_scopes name are checked. */
  resourceServers: Pick<ResourceServers, 'find'>;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}

/**
 * What a client's tenant allows its metadata: the tenant is the clients table's column (never
 * metadata), and only the default tenant's clients may act across tenants (iam.tenants:* scopes,
 * multi_tenant sign-in).
 */
export function assertTenantMetadata(scope: TenantScope, metadata: Record<string, unknown>): void {
  if (Object.hasOwn(metadata, 'tenant_id')) {
    throw new AppError('IDENT_VALIDATION', 'tenant_id: a client belongs to the tenant it is registered in (X-Tenant-Id), not to one its metadata names');
  }
  if (scope.tenantId === DEFAULT_TENANT_ID) return;
  const platform = (typeof metadata.scope === 'string' ? metadata.scope.split(' ') : []).filter(isPlatformScope);
  if (platform.length) throw new AppError('IDENT_VALIDATION', `scope: ${platform.join(' ')} only for clients of the default tenant`);
  if (metadata.multi_tenant === true) throw new AppError('IDENT_VALIDATION', 'multi_tenant: only for clients of the default tenant');
}

export function createClientRegistry(deps: ClientRegistryDeps) {
  const { repo, box, events } = deps;
  const target = (clientId: string, tenantId: string) => ({ target: { type: 'client' as const, id: clientId }, tenantId });
  /**
   * Clients the provider itself needs (the bootstrap admin client, the account console), each with
   * why it is built in. They are made to match their settings at every boot, so a change through
   * the API would be undone at the next one, or break the provider until then.
   */
  const builtIn = new Map<string, string>();

  function assertNotBuiltIn(clientId: string) {
    const why = builtIn.get(clientId);
    if (why) {
      throw new AppError('IDENT_CLIENT_BUILT_IN', `the client ${clientId} is built in (${why}); it cannot be changed or deleted through the API`);
    }
  }
  // Every token request reads its client; changes are broadcast to every instance's copy.
  const cache = createSharedCache<ClientRow>({
    name: 'clients',
    ttlMs: CACHE_TTL_MS,
    ephemeral: deps.ephemeral,
    load: (clientId) => repo.find(clientId),
  });

  function sealSecret(clientId: string, metadata: Record<string, unknown>, secret: string | undefined) {
    if (!secret) return { secret_digest: null, secret_sealed: null };
    return {
      secret_digest: box.digest(secret, CLIENT_SECRET_PURPOSE),
      // Only client_secret_jwt needs the raw secret back (it keys an HMAC); keep it encrypted.
      secret_sealed:
        metadata.token_endpoint_auth_method === 'client_secret_jwt' ? box.encrypt(secret, `clients:${clientId}`) : null,
    };
  }

  return {
    unsealSecret(row: ClientRow): string | undefined {
      return row.secret_sealed ? box.decrypt(row.secret_sealed, `clients:${row.client_id}`) : undefined;
    },

    /** The stored client, through the shared cache (what the provider reads on every request). */
    find(clientId: string): Promise<ClientRow | undefined> {
      return cache.get(clientId);
    },

    /**
     * Stores a client; returns its metadata with the secret, which is shown only this once. A
     * built-in client's upsert at boot records nothing: its settings, not a person, manage it.
     */
    async register(scope: TenantScope, input: ClientInput, opts: { upsert?: boolean; also?: AlsoInTransaction } = {}, context: ChangeContext = {}) {
      const { client_secret: chosenSecret, client_id: chosenId, ...metadata } = input.metadata;
      const clientId = chosenId ?? randomBytes(16).toString('base64url');
      assertTenantMetadata(scope, metadata);
      await assertGrantsDefined(deps.resourceServers, metadata, {}, scope.tenantId);
      const secret = needsSecret(metadata) ? (chosenSecret ?? generateClientSecret()) : undefined;
      const row = {
        client_id: clientId,
        tenant_id: scope.tenantId,
        metadata,
        first_party: input.firstParty ?? false,
        ...sealSecret(clientId, metadata, secret),
      };
      try {
        if (opts.upsert) await repo.upsert(row);
        else {
          await deps.transaction(async (trx) => {
            const stored = await repo.insert(row, trx);
            await events.record({
              type: 'client.created', ...target(clientId, scope.tenantId), ...byOperator(context),
              payload: { client: clientPayload(stored), secretIssued: secret !== undefined },
            }, trx);
            await opts.also?.(trx);
          });
        }
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_CLIENT_DUPLICATE', 'a client with this client_id exists');
        throw err;
      }
      await cache.invalidate(clientId);
      return { ...metadata, client_id: clientId, ...(secret ? { client_secret: secret } : {}) };
    },

    /**
     * Registers (or brings back in line) a client the provider needs and marks it built in, so the
     * API refuses to change, rotate or delete it. `why` says which settings manage it.
     */
    async ensureBuiltIn(input: ClientInput & { metadata: { client_id: string } }, why: string) {
      builtIn.set(input.metadata.client_id, why);
      return this.register({ tenantId: DEFAULT_TENANT_ID }, input, { upsert: true });
    },

    /** A page of the tenant's clients; with `adminScopesWithin`, only those whose iam.* scopes are all in it. */
    async list(scope: TenantScope, page: number, pageSize: number, opts: { adminScopesWithin?: readonly string[] } = {}) {
      return repo.list(scope.tenantId, (page - 1) * pageSize, pageSize, opts);
    },

    /** The client, if it is in the scope's tenant: another tenant's is 403 IDENT_CROSS_TENANT. */
    async get(scope: TenantScope, clientId: string): Promise<ClientRow> {
      const row = await repo.find(clientId);
      if (!row) throw new AppError('IDENT_CLIENT_NOT_FOUND', 'no client with this client_id');
      assertInTenant(scope, row.tenant_id, 'the client');
      return row;
    },

    /**
     * Replaces a client's metadata. A client that now needs a secret and has none gets one
     * (returned once); one that no longer authenticates with a secret loses it.
     */
    async update(scope: TenantScope, clientId: string, metadata: Record<string, unknown>, firstParty: boolean, context: ChangeContext = {}) {
      const current = await this.get(scope, clientId);
      assertNotBuiltIn(clientId);
      assertTenantMetadata(scope, metadata);
      await assertGrantsDefined(deps.resourceServers, metadata, current.metadata as Record<string, unknown>, current.tenant_id);
      let secret: string | undefined;
      let secretColumns = {};
      const keepsRawSecret = metadata.token_endpoint_auth_method === 'client_secret_jwt';
      if (!needsSecret(metadata)) secretColumns = { secret_digest: null, secret_sealed: null, ...NO_PREVIOUS_SECRET };
      else if (!current.secret_digest || (keepsRawSecret && !current.secret_sealed)) {
        // Only a digest is stored, so a switch to client_secret_jwt needs a new secret.
        secret = generateClientSecret();
        secretColumns = { ...sealSecret(clientId, metadata, secret), ...NO_PREVIOUS_SECRET };
      } else if (!keepsRawSecret && current.secret_sealed) {
        secretColumns = { secret_sealed: null };
      }
      const changed = changedFields({ ...(current.metadata as Record<string, unknown>), first_party: current.first_party }, { ...metadata, first_party: firstParty });
      const row = await deps.transaction(async (trx) => {
        const updated = (await repo.update(clientId, { metadata, first_party: firstParty, ...secretColumns }, trx))!;
        await events.record({
          type: 'client.updated', ...target(clientId, current.tenant_id), ...byOperator(context),
          // Whether the change issued a new secret or dropped one (never the secret).
          payload: { client: clientPayload(updated), changed, secretIssued: secret !== undefined, secretRemoved: Boolean(current.secret_digest) && !updated.secret_digest },
        }, trx);
        return updated;
      });
      await cache.invalidate(clientId);
      return { row, secret };
    },

    /**
     * A new secret, shown once. Without `overlapSeconds` the old one stops working at once; with it
     * (a service account's rotation) the old one's digest stays valid that long (client-secrets.ts),
     * on every instance: the row is the one source, and the change is broadcast like any other.
     * A client_secret_jwt client keys an HMAC with its one raw secret, so it gets no overlap.
     */
    async rotateSecret(scope: TenantScope, clientId: string, context: ChangeContext = {}, opts: { overlapSeconds?: number; also?: AlsoInTransaction } = {}): Promise<string> {
      const current = await this.get(scope, clientId);
      assertNotBuiltIn(clientId);
      const metadata = current.metadata as Record<string, unknown>;
      if (!needsSecret(metadata)) throw new AppError('IDENT_VALIDATION', 'this client does not authenticate with a secret');
      const secret = generateClientSecret();
      const overlap = opts.overlapSeconds && current.secret_digest && !current.secret_sealed ? opts.overlapSeconds : 0;
      const previous = overlap
        ? { previous_secret_digest: current.secret_digest, previous_secret_expires_at: new Date(Date.now() + overlap * 1000) }
        : NO_PREVIOUS_SECRET;
      await deps.transaction(async (trx) => {
        await repo.update(clientId, { ...sealSecret(clientId, metadata, secret), ...previous }, trx);
        await events.record({ type: 'client.secret_rotated', ...target(clientId, current.tenant_id), ...byOperator(context), payload: { client: clientPayload(current) } }, trx);
        await opts.also?.(trx);
      });
      await cache.invalidate(clientId);
      return secret;
    },

    /**
     * Withdraws every client's grant at `resource` beyond `kept` (the scopes the resource server
     * still defines; none when it was deleted), so they never come back with a re-registration.
     */
    async withdrawResourceGrants(resource: string, kept: readonly string[], context: ChangeContext = {}): Promise<void> {
      const still = new Set(kept);
      for (const row of await repo.withResourceGrant(resource)) {
        const metadata = row.metadata as Record<string, unknown>;
        const grants = { ...(metadata[RESOURCE_SCOPES] as ResourceScopes) };
        const scopes = grantedScopes(metadata, resource).filter((s) => still.has(s));
        if (scopes.length) grants[resource] = scopes.join(' ');
        else delete grants[resource];
        await deps.transaction(async (trx) => {
          const updated = (await repo.update(row.client_id, { metadata: { ...metadata, [RESOURCE_SCOPES]: grants } }, trx))!;
          // The client changes because the resource server did: the same actor, and why.
          await events.record({
            type: 'client.updated', ...target(row.client_id, row.tenant_id), ...byOperator(context),
            payload: { client: clientPayload(updated), changed: [RESOURCE_SCOPES], secretIssued: false, secretRemoved: false, reason: 'resource_server_changed', resource },
          }, trx);
        });
        await cache.invalidate(row.client_id);
      }
    },

    /** Deletes a client and revokes every grant and token issued to it. */
    async remove(scope: TenantScope, clientId: string, context: ChangeContext = {}, opts: { also?: AlsoInTransaction } = {}): Promise<void> {
      const row = await this.get(scope, clientId);
      assertNotBuiltIn(clientId);
      await deps.transaction(async (trx) => {
        // A service account's own event goes first: deleting the client cascades to its row.
        await opts.also?.(trx);
        if (!(await repo.delete(clientId, trx))) throw new AppError('IDENT_CLIENT_NOT_FOUND', 'no client with this client_id');
        await events.record({ type: 'client.deleted', ...target(clientId, row.tenant_id), ...byOperator(context), payload: { client: clientPayload(row) } }, trx);
      });
      // First the client (no new token can be issued to it), then what it was already issued.
      await cache.invalidate(clientId);
      await deps.payloads.revokeByClientId(clientId);
    },
  };
}

export type ClientRegistry = ReturnType<typeof createClientRegistry>;
