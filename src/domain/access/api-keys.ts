import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { constantTimeEqual, type SecretBox } from '../../infra/crypto.ts';
import type { ApiKeyRow, ApiKeysRepo } from '../../repos/api-keys.ts';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';

/**
 * API keys: long-lived bearer credentials for the admin API, each of one tenant, with fixed iam.*
 * scopes. A key is `idp_<its id, 32 hex>_<256 random bits, base64url>`: the id finds the row
 * without a scan, the secret part is checked against a keyed digest (HMAC-SHA-256 under the
 * key-encryption key) in constant time. Only the digest is stored; the key is in the answer that
 * creates or rotates it and nowhere else. There is no per-instance cache: every use reads the row
 * by primary key, so a revocation or the end of an overlap holds on every instance at once.
 */

export type ApiKeyStatus = 'active' | 'expired' | 'revoked';

export interface ApiKey {
  id: string;
  tenantId: string;
  name: string;
  scopes: string[];
  status: ApiKeyStatus;
  expiresAt: Date | null;
  lastUsedAt: Date | null;
  revokedAt: Date | null;
  /** While a rotation's overlap lasts: when the key it replaced stops working. */
  previousKeyExpiresAt: Date | null;
  createdBy: { type: ApiKeyRow['created_by_type']; id: string | null };
  createdAt: Date;
  updatedAt: Date;
}

/** What an authenticated key may do: the admin API's caller for a request made with it. */
export interface ApiKeyPrincipal {
  id: string;
  tenantId: string;
  scopes: string[];
  expiresAt: Date | null;
}

export interface ApiKeySettings {
  /** A use is written to last_used_at at most this often per key (not on every request). */
  lastUsedResolutionSeconds: number;
}

const KEY_PREFIX = 'idp_';
const KEY_FORMAT = /^idp_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;
const DIGEST_PURPOSE = 'api-key';

/** Looks like one of our keys (not a JWT): the admin API's bearer check sends it here. */
export const isApiKeyFormat = (token: string) => token.startsWith(KEY_PREFIX);

const dashed = (hex: string) => `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
const newKey = (id: string) => `${KEY_PREFIX}${id.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`;
const date = (t: Date | string | null) => (t === null ? null : new Date(t));

export function statusOf(row: Pick<ApiKeyRow, 'revoked_at' | 'expires_at'>, now = Date.now()): ApiKeyStatus {
  if (row.revoked_at) return 'revoked';
  if (row.expires_at && new Date(row.expires_at).getTime() <= now) return 'expired';
  return 'active';
}

export function toApiKey(row: ApiKeyRow, now = Date.now()): ApiKey {
  const previousUntil = date(row.previous_expires_at);
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    scopes: row.scopes,
    status: statusOf(row, now),
    expiresAt: date(row.expires_at),
    lastUsedAt: date(row.last_used_at),
    revokedAt: date(row.revoked_at),
    previousKeyExpiresAt: row.previous_digest && previousUntil && previousUntil.getTime() > now && !row.revoked_at ? previousUntil : null,
    createdBy: { type: row.created_by_type, id: row.created_by_id },
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

/** The event payload: what the key is, never the key or its digest. */
const apiKeyPayload = (k: ApiKey) => ({
  id: k.id,
  name: k.name,
  scopes: k.scopes,
  expiresAt: k.expiresAt?.toISOString() ?? null,
});

export interface NewApiKeyInput {
  name: string;
  scopes: string[];
  expiresAt?: Date | undefined;
}

export function createApiKeys(deps: {
  repo: ApiKeysRepo;
  box: SecretBox;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  settings: ApiKeySettings;
  onBackgroundError: (err: unknown) => void;
}) {
  const { repo, box, events } = deps;
  const digestOf = (key: string) => box.digest(key, DIGEST_PURPOSE);
  // Compared against when no row matches, so an unknown id costs the same digest and compare.
  const decoy = digestOf(newKey(randomUUID()));
  const target = (id: string) => ({ target: { type: 'api_key' as const, id } });

  /** The key `id` of the scope's tenant: 404 when there is none, 403 when it is another tenant's. */
  async function inScope(scope: TenantScope, id: string, trx?: Knex.Transaction): Promise<ApiKeyRow> {
    const row = trx ? await repo.lockById(id, trx) : await repo.findById(id);
    if (!row) throw new AppError('IDENT_API_KEY_NOT_FOUND');
    assertInTenant(scope, row.tenant_id, 'the API key');
    return row;
  }

  return {
    /** A new key in the scope's tenant; the answer carries the key, which is never shown again. */
    async create(scope: TenantScope, input: NewApiKeyInput, context: ChangeContext = {}): Promise<{ apiKey: ApiKey; key: string }> {
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
        throw new AppError('IDENT_VALIDATION', 'body.expiresAt: must be in the future');
      }
      const id = randomUUID();
      const key = newKey(id);
      const { actor, requestId } = byOperator(context);
      const row = await deps.transaction(async (trx) => {
        const stored = await repo.insert({
          id,
          tenant_id: scope.tenantId,
          name: input.name,
          scopes: [...new Set(input.scopes)],
          digest: digestOf(key),
          expires_at: input.expiresAt ?? null,
          created_by_type: actor.type === 'client' || actor.type === 'api_key' ? actor.type : 'system',
          created_by_id: actor.id,
        }, trx);
        await events.record({
          type: 'api_key.created', ...target(id), tenantId: scope.tenantId, actor, requestId,
          payload: { apiKey: apiKeyPayload(toApiKey(stored)) },
        }, trx);
        return stored;
      });
      return { apiKey: toApiKey(row), key };
    },

    async list(scope: TenantScope, page: number, pageSize: number) {
      const { rows, total } = await repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
      const now = Date.now();
      return { rows: rows.map((r) => toApiKey(r, now)), total };
    },

    async get(scope: TenantScope, id: string): Promise<ApiKey> {
      return toApiKey(await inScope(scope, id));
    },

    /**
     * A new key for the same id, name and scopes; the one it replaces keeps working for
     * `overlapSeconds` (0: stops at once). A key before that is dropped: only the latest
     * predecessor overlaps. `allowed` runs on the locked row before anything changes.
     */
    async rotate(
      scope: TenantScope,
      id: string,
      overlapSeconds: number,
      context: ChangeContext = {},
      allowed: (key: ApiKey) => void = () => {},
    ): Promise<{ apiKey: ApiKey; key: string; previousKeyExpiresAt: Date | null }> {
      const key = newKey(id);
      const row = await deps.transaction(async (trx) => {
        const current = await inScope(scope, id, trx);
        const status = statusOf(current);
        if (status !== 'active') throw new AppError('IDENT_API_KEY_NOT_FOUND', `the API key is ${status}: it cannot be rotated; create a new one`);
        allowed(toApiKey(current));
        const until = overlapSeconds > 0 ? new Date(Date.now() + overlapSeconds * 1000) : null;
        const updated = (await repo.update(id, {
          digest: digestOf(key),
          previous_digest: until ? current.digest : null,
          previous_expires_at: until,
        }, trx))!;
        await events.record({
          type: 'api_key.rotated', ...target(id), tenantId: current.tenant_id, ...byOperator(context),
          payload: { apiKey: apiKeyPayload(toApiKey(updated)), previousKeyExpiresAt: until?.toISOString() ?? null },
        }, trx);
        return updated;
      });
      const apiKey = toApiKey(row);
      return { apiKey, key, previousKeyExpiresAt: apiKey.previousKeyExpiresAt };
    },

    /**
     * Revokes the key and any predecessor still overlapping, at once: every instance reads the row
     * on every use. Revoking a revoked key changes nothing and records nothing.
     */
    async revoke(scope: TenantScope, id: string, context: ChangeContext = {}, allowed: (key: ApiKey) => void = () => {}): Promise<void> {
      await deps.transaction(async (trx) => {
        const current = await inScope(scope, id, trx);
        if (current.revoked_at) return;
        allowed(toApiKey(current));
        const updated = (await repo.update(id, { revoked_at: new Date(), previous_digest: null, previous_expires_at: null }, trx))!;
        await events.record({
          type: 'api_key.revoked', ...target(id), tenantId: current.tenant_id, ...byOperator(context),
          payload: { apiKey: apiKeyPayload(toApiKey(updated)) },
        }, trx);
      });
    },

    /**
     * The key's principal if `token` is a live key: its current secret, or the one a rotation
     * replaced while the overlap lasts; undefined for anything else (malformed, unknown, wrong
     * secret, expired, revoked), with no hint which. A use is recorded at most once a
     * `lastUsedResolutionSeconds` per key, off the request's path.
     */
    async authenticate(token: string): Promise<ApiKeyPrincipal | undefined> {
      const match = KEY_FORMAT.exec(token);
      if (!match) return undefined;
      const row = await repo.findById(dashed(match[1]!));
      const presented = digestOf(token);
      const now = Date.now();
      const current = constantTimeEqual(presented, row?.digest ?? decoy);
      const previous = constantTimeEqual(presented, row?.previous_digest ?? decoy)
        && Boolean(row?.previous_expires_at && new Date(row.previous_expires_at).getTime() > now);
      if (!row || !(current || previous) || statusOf(row, now) !== 'active') return undefined;
      const seen = row.last_used_at ? new Date(row.last_used_at).getTime() : 0;
      if (now - seen >= deps.settings.lastUsedResolutionSeconds * 1000) {
        repo.touch(row.id, deps.settings.lastUsedResolutionSeconds).catch(deps.onBackgroundError);
      }
      return { id: row.id, tenantId: row.tenant_id, scopes: row.scopes, expiresAt: date(row.expires_at) };
    },
  };
}

export type ApiKeys = ReturnType<typeof createApiKeys>;
