import { z } from 'zod';
import type { OperationSpec } from './operation.ts';
import { role } from './role-schemas.ts';
import { displayText, overlapSeconds, page, pageQuery } from './schemas.ts';

// /api/v1/service-accounts: confidential client_credentials clients of the tenant, with roles
// (service-account-routes.ts).

export const serviceAccountCreate = z.strictObject({
  name: displayText(200),
  description: displayText(500).optional(),
  roleIds: z.array(z.uuid()).max(100).optional().describe('Roles of the acting tenant to give it'),
});

export const serviceAccount = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  clientId: z.string().describe('Its client_id at the token endpoint (client_secret_basic, grant_type=client_credentials)'),
  roles: z.array(role),
  createdAt: z.iso.datetime(),
});

export const serviceAccountSummary = serviceAccount.omit({ roles: true });

export const serviceAccountWithSecret = serviceAccount.extend({
  clientSecret: z.string().describe('In this answer only'),
});

export const serviceAccountRotate = z.strictObject({
  overlapSeconds: overlapSeconds('the old secret'),
});

export const serviceAccountSecret = z.object({
  id: z.uuid(),
  clientId: z.string(),
  clientSecret: z.string().describe('In this answer only'),
  previousSecretExpiresAt: z.iso.datetime().nullable().describe('When the old secret stops working; null when it already has'),
});

export const serviceAccountOperationSpecs = {
  'service-accounts list': {
    method: 'get', path: '/service-accounts', scope: 'iam.service-accounts:read', summary: 'List the service accounts of the tenant (never a secret)',
    query: pageQuery, response: { status: 200, schema: page(serviceAccountSummary) },
  },
  'service-accounts create': {
    method: 'post', path: '/service-accounts', scope: 'iam.service-accounts:create', idempotent: true,
    summary: 'Create a service account: a confidential client_credentials client of the tenant with roles; the secret is in this answer only',
    body: serviceAccountCreate, response: { status: 201, schema: serviceAccountWithSecret },
  },
  'service-accounts get': {
    method: 'get', path: '/service-accounts/:id', scope: 'iam.service-accounts:read', summary: 'Get a service account with its roles (never its secret)',
    response: { status: 200, schema: serviceAccount },
  },
  'service-accounts rotate': {
    method: 'post', path: '/service-accounts/:id/rotate', scope: 'iam.service-accounts:rotate',
    summary: 'A new secret (in this answer only); the old one keeps working for overlapSeconds (default a day), then is refused',
    body: serviceAccountRotate, response: { status: 200, schema: serviceAccountSecret },
  },
  'service-accounts delete': {
    method: 'delete', path: '/service-accounts/:id', scope: 'iam.service-accounts:delete',
    summary: 'Delete a service account and its client; every token it holds is revoked at once (opaque ones: introspection says inactive on every instance)',
    response: { status: 204 },
  },
} as const satisfies Record<string, OperationSpec>;

export type ServiceAccountCommand = keyof typeof serviceAccountOperationSpecs;
