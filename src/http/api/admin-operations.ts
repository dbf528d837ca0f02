import * as ak from './api-key-schemas.ts';
import * as audit from './audit-schemas.ts';
import * as idp from './identity-provider-schemas.ts';
import type { Handler, OperationSpec } from './operation.ts';
import * as s from './schemas.ts';
import { userMergeSpecs, type UserMergeCommand } from './user-merge-schemas.ts';
import * as wh from './webhook-schemas.ts';
import { roleOperationSpecs } from './role-schemas.ts';
import { serviceAccountOperationSpecs } from './service-account-schemas.ts';
import * as tn from './tenant-schemas.ts';

/**
 * The admin API's operations table, keyed by the idp CLI command that calls each one. Pure data
 * (no services): the routes attach a handler to every entry (routes.ts; the compiler checks none
 * is missing), the OpenAPI document is generated from it, and the CLI makes its commands from it,
 * so neither can fall behind the API.
 */
/** Tenants (tenant-routes.ts): platform callers only. */
const tenantOperationSpecs = {
  'tenants list': {
    method: 'get', path: '/tenants', scope: 'iam.tenants:read', summary: 'List tenants (platform callers only)',
    query: s.pageQuery, response: { status: 200, schema: s.page(tn.tenant) },
  },
  'tenants create': {
    method: 'post', path: '/tenants', scope: 'iam.tenants:create', idempotent: true,
    summary: 'Create a tenant with its seeded roles (admin, regular, guest); a taken slug answers 409',
    body: tn.tenantCreate, response: { status: 201, schema: tn.tenant },
  },
  'tenants get': {
    method: 'get', path: '/tenants/:id', scope: 'iam.tenants:read', summary: 'Get a tenant by id or slug',
    response: { status: 200, schema: tn.tenant },
  },
  'tenants update': {
    method: 'patch', path: '/tenants/:id', scope: 'iam.tenants:update', summary: 'Rename a tenant or change its slug',
    body: tn.tenantUpdate, response: { status: 200, schema: tn.tenant },
  },
  'tenants delete': {
    method: 'delete', path: '/tenants/:id', scope: 'iam.tenants:delete',
    summary: 'Delete an empty tenant (409 while it has users, clients, resource servers, identity providers or webhooks; never the default tenant)',
    response: { status: 204 },
  },
} as const satisfies Record<string, OperationSpec>;

export const adminOperationSpecs = {
  // Users
  'users list': {
    method: 'get', path: '/users', scope: 'iam.users:read', summary: 'List users (paginated; search matches email and names)',
    query: s.userListQuery, response: { status: 200, schema: s.page(s.user) },
  },
  'users create': {
    method: 'post', path: '/users', scope: 'iam.users:create', summary: 'Create a user', idempotent: true,
    body: s.userCreate, response: { status: 201, schema: s.user },
  },
  'users get': {
    method: 'get', path: '/users/:id', scope: 'iam.users:read', summary: 'Get a user, with their second factors (mfa) and lockout (lock)',
    response: { status: 200, schema: s.userDetail },
  },
  'users reset-mfa': {
    method: 'post', path: '/users/:id/mfa/reset', scope: 'iam.users:update',
    summary: 'Remove every second factor of the user, end their sessions and tokens, and mail them (help desk)',
    response: { status: 200, schema: s.userDetail },
  },
  'users unlock': {
    method: 'post', path: '/users/:id/unlock', scope: 'iam.users:update',
    summary: 'End a sign-in lockout at once: the account, its address and its second factors (help desk)',
    response: { status: 200, schema: s.userDetail },
  },
  'users update': {
    method: 'patch', path: '/users/:id', scope: 'iam.users:update', summary: 'Update a user (a new password ends their sessions)',
    body: s.userUpdate, response: { status: 200, schema: s.user },
  },
  'users delete': {
    method: 'delete', path: '/users/:id', scope: 'iam.users:delete', summary: 'Deactivate a user (soft delete; revokes sessions and tokens)',
    response: { status: 200, schema: s.user },
  },
  'users logout': {
    method: 'post', path: '/users/:id/logout', scope: 'iam.users:update',
    summary: "End every session of the user and revoke their tokens (relying parties with back-channel logout are told); the account stays active",
    response: { status: 204 },
  },
  'users suspend': {
    method: 'post', path: '/users/:id/suspend', scope: 'iam.users:suspend', summary: 'Suspend a user (revokes sessions and tokens)',
    response: { status: 200, schema: s.user },
  },
  'users reactivate': {
    method: 'post', path: '/users/:id/reactivate', scope: 'iam.users:suspend', summary: 'Reactivate a suspended user',
    response: { status: 200, schema: s.user },
  },
  ...userMergeSpecs,

  // Clients
  'clients list': {
    method: 'get', path: '/clients', scope: 'iam.clients:read',
    summary: 'List clients (no secrets); only those whose admin scopes the token holds all of',
    query: s.pageQuery, response: { status: 200, schema: s.page(s.client) },
  },
  'clients create': {
    method: 'post', path: '/clients', scope: 'iam.clients:create', idempotent: true,
    summary: 'Register a client (RFC 7591 metadata); the secret is in this answer only',
    body: s.clientCreate, response: { status: 201, schema: s.client },
  },
  'clients get': {
    method: 'get', path: '/clients/:clientId', scope: 'iam.clients:read', summary: 'Get a client (no secret)',
    response: { status: 200, schema: s.client },
  },
  'clients update': {
    method: 'patch', path: '/clients/:clientId', scope: 'iam.clients:update', summary: 'Change client metadata (merged over the current)',
    body: s.clientUpdate, response: { status: 200, schema: s.client },
  },
  'clients delete': {
    method: 'delete', path: '/clients/:clientId', scope: 'iam.clients:delete', summary: 'Delete a client and revoke its grants and tokens',
    response: { status: 204 },
  },
  'clients rotate-secret': {
    method: 'post', path: '/clients/:clientId/secret', scope: 'iam.clients:update', summary: 'Rotate the client secret (the old one stops working at once)',
    response: { status: 200, schema: s.clientSecret },
  },

  // Resource servers
  'resource-servers list': {
    method: 'get', path: '/resource-servers', scope: 'iam.resource-servers:read', summary: 'List resource servers',
    query: s.pageQuery, response: { status: 200, schema: s.page(s.resourceServer) },
  },
  'resource-servers create': {
    method: 'post', path: '/resource-servers', scope: 'iam.resource-servers:create', summary: 'Register a resource server (RFC 8707 identifier)',
    body: s.resourceServerCreate, response: { status: 201, schema: s.resourceServer },
  },
  'resource-servers get': {
    method: 'get', path: '/resource-servers/:id', scope: 'iam.resource-servers:read', summary: 'Get a resource server',
    response: { status: 200, schema: s.resourceServer },
  },
  'resource-servers update': {
    method: 'patch', path: '/resource-servers/:id', scope: 'iam.resource-servers:update', summary: 'Change a resource server',
    body: s.resourceServerUpdate, response: { status: 200, schema: s.resourceServer },
  },
  'resource-servers delete': {
    method: 'delete', path: '/resource-servers/:id', scope: 'iam.resource-servers:delete', summary: 'Delete a resource server',
    response: { status: 204 },
  },

  // Identity providers (identity-provider-routes.ts)
  'identity-providers list': {
    method: 'get', path: '/identity-providers', scope: 'iam.idps:read', summary: 'List identity providers',
    query: s.pageQuery, response: { status: 200, schema: s.page(idp.identityProvider) },
  },
  'identity-providers create': {
    method: 'post', path: '/identity-providers', scope: 'iam.idps:create',
    summary: 'Register an upstream identity provider (type oidc, oauth2 or saml); a taken alias answers 409',
    body: idp.identityProviderCreate, response: { status: 201, schema: idp.identityProvider }, idempotent: true,
  },
  'identity-providers get': {
    method: 'get', path: '/identity-providers/:id', scope: 'iam.idps:read', summary: 'Get an identity provider (never its client secret)',
    response: { status: 200, schema: idp.identityProvider },
  },
  'identity-providers update': {
    method: 'patch', path: '/identity-providers/:id', scope: 'iam.idps:update',
    summary: 'Change an identity provider (not its type or alias); clientSecret rotates the secret, null removes it',
    body: idp.identityProviderUpdate, response: { status: 200, schema: idp.identityProvider },
  },
  'identity-providers delete': {
    method: 'delete', path: '/identity-providers/:id', scope: 'iam.idps:delete',
    summary: 'Delete an identity provider and its links to users (their accounts and other ways in stay)',
    response: { status: 204 },
  },

  // Webhooks (webhook-routes.ts)
  'webhooks list': {
    method: 'get', path: '/webhooks', scope: 'iam.webhooks:read', summary: 'List webhooks (never their secrets)',
    query: s.pageQuery, response: { status: 200, schema: s.page(wh.webhook) },
  },
  'webhooks create': {
    method: 'post', path: '/webhooks', scope: 'iam.webhooks:create', idempotent: true,
    summary: 'Register a webhook for event types; the signing secret is in this answer only',
    body: wh.webhookCreate, response: { status: 201, schema: wh.webhookWithSecret },
  },
  'webhooks get': {
    method: 'get', path: '/webhooks/:id', scope: 'iam.webhooks:read', summary: 'Get a webhook (never its secret)',
    response: { status: 200, schema: wh.webhook },
  },
  'webhooks update': {
    method: 'patch', path: '/webhooks/:id', scope: 'iam.webhooks:update', summary: 'Change a webhook (enabled: true turns it back on)',
    body: wh.webhookUpdate, response: { status: 200, schema: wh.webhook },
  },
  'webhooks delete': {
    method: 'delete', path: '/webhooks/:id', scope: 'iam.webhooks:delete', summary: 'Delete a webhook, its queue and its delivery log',
    response: { status: 204 },
  },
  'webhooks rotate-secret': {
    method: 'post', path: '/webhooks/:id/secret', scope: 'iam.webhooks:update',
    summary: 'Rotate the signing secret (every attempt from now on is signed with the new one); the secret is in this answer only',
    response: { status: 200, schema: wh.webhookSecret },
  },
  'webhooks deliveries': {
    method: 'get', path: '/webhooks/:id/deliveries', scope: 'iam.webhooks:read',
    summary: "A webhook's delivery log, newest first: status, attempts, the receiver's last answer and latency",
    query: s.pageQuery, response: { status: 200, schema: s.page(wh.delivery) },
  },
  'webhooks redeliver': {
    method: 'post', path: '/webhooks/:id/deliveries/:deliveryId/retry', scope: 'iam.webhooks:update',
    summary: 'Send a delivery again (same webhook-id and body), with a fresh retry window',
    response: { status: 202, schema: wh.delivery },
  },

  // The audit trail (audit-routes.ts): read only; the live stream is GET /events/stream (event-stream.ts)
  'audit events': {
    method: 'get', path: '/audit/events', scope: 'iam.audit:read',
    summary: 'List events, newest first, by type, actor, target and time; keyset pages (nextCursor)',
    query: audit.auditEventsQuery, response: { status: 200, schema: audit.auditPage },
  },
  'users events': {
    method: 'get', path: '/users/:id/events', scope: 'iam.audit:read',
    summary: "List one user's events (about them or by them), newest first; keyset pages (nextCursor)",
    query: audit.userEventsQuery, response: { status: 200, schema: audit.auditPage },
  },
  ...ak.apiKeyOperations,

  // Roles and their holders (role-routes.ts), service accounts (service-account-routes.ts)
  ...roleOperationSpecs,
  ...serviceAccountOperationSpecs,

  ...tenantOperationSpecs,
} as const satisfies Record<string, OperationSpec>;

export type AdminCommand = keyof typeof adminOperationSpecs;

/** A handler for every operation of the table, and none for an operation it lacks. */
export type AdminHandlers<K extends AdminCommand = AdminCommand> = Record<K, Handler>;

export type IdentityProviderCommand = Extract<AdminCommand, `identity-providers ${string}`>;
export type WebhookCommand = Extract<AdminCommand, `webhooks ${string}`>;

export type AuditCommand = 'audit events' | 'users events';
export type ApiKeyCommand = Extract<AdminCommand, `api-keys ${string}`>;
export type { UserMergeCommand };
export type TenantCommand = Extract<AdminCommand, `tenants ${string}`>;
