import { z } from 'zod';
import { ADMIN_SCOPES } from '../../domain/clients/admin-scopes.ts';
import type { OperationSpec } from './operation.ts';
import { displayText, overlapSeconds, page, pageQuery } from './schemas.ts';

// /api/v1/api-keys: long-lived bearer credentials for the admin API, each of one tenant.

export const apiKeyCreate = z.strictObject({
  name: displayText(200),
  scopes: z.array(z.enum(ADMIN_SCOPES)).min(1).max(ADMIN_SCOPES.length)
    .describe("The admin (iam.*) scopes the key carries: only scopes the caller's own token holds; iam.tenants:* only on a key of the default tenant"),
  expiresAt: z.iso.datetime({ offset: true }).optional().describe('When the key stops working (ISO 8601, in the future); without it the key lives until revoked'),
});

export const apiKeyRotate = z.strictObject({
  overlapSeconds: overlapSeconds('the key being replaced'),
});

export const apiKey = z.object({
  id: z.uuid(),
  name: z.string(),
  scopes: z.array(z.string()),
  status: z.enum(['active', 'expired', 'revoked']),
  expiresAt: z.iso.datetime().nullable(),
  lastUsedAt: z.iso.datetime().nullable().describe('The last use, to the minute (uses are recorded at most once a minute)'),
  revokedAt: z.iso.datetime().nullable(),
  previousKeyExpiresAt: z.iso.datetime().nullable().describe('While a rotation overlap lasts: when the replaced key stops working'),
  createdBy: z.object({ type: z.enum(['client', 'api_key', 'system']), id: z.string().nullable() }).describe('The admin client or API key that made it'),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

export const apiKeyWithKey = apiKey.extend({
  key: z.string().describe('The API key (idp_...), in this answer only: send it as Authorization: Bearer <key>'),
});

export const apiKeyRotated = z.object({
  id: z.uuid(),
  key: z.string().describe('The new API key, in this answer only'),
  previousKeyExpiresAt: z.iso.datetime().nullable().describe('When the replaced key stops working; null when it stopped at once'),
});

/** The API-key operations of the admin operations table (admin-operations.ts), handled in api-key-routes.ts. */
export const apiKeyOperations = {
  'api-keys list': {
    method: 'get', path: '/api-keys', scope: 'iam.apikeys:read', summary: "List the tenant's API keys (never a key): status, scopes, last use, expiry",
    query: pageQuery, response: { status: 200, schema: page(apiKey) },
  },
  'api-keys create': {
    method: 'post', path: '/api-keys', scope: 'iam.apikeys:create', idempotent: true,
    summary: 'Create an API key for the admin API with some of the caller\'s own iam.* scopes; the key is in this answer only',
    body: apiKeyCreate, response: { status: 201, schema: apiKeyWithKey },
  },
  'api-keys get': {
    method: 'get', path: '/api-keys/:id', scope: 'iam.apikeys:read', summary: 'Get an API key (never the key)',
    response: { status: 200, schema: apiKey },
  },
  'api-keys rotate': {
    method: 'post', path: '/api-keys/:id/rotate', scope: 'iam.apikeys:rotate',
    summary: 'A new key for the API key; the one it replaces keeps working for overlapSeconds (default 24 h); the new key is in this answer only',
    body: apiKeyRotate, response: { status: 200, schema: apiKeyRotated },
  },
  'api-keys revoke': {
    method: 'delete', path: '/api-keys/:id', scope: 'iam.apikeys:revoke', summary: 'Revoke an API key (and a replaced one still in its overlap) at once, on every instance',
    response: { status: 204 },
  },
} as const satisfies Record<string, OperationSpec>;
