import { z } from 'zod';
import type { OperationSpec } from './operation.ts';
import { displayText, page, pageQuery, scopeToken } from './schemas.ts';

// /api/v1/roles and the roles users and service accounts hold (role-routes.ts).

export const permission = z.strictObject({
  resource: z.string().min(1).max(2048).describe("A registered resource server's identifier (of this tenant, or of the default tenant)"),
  scope: scopeToken.describe('A scope that resource server defines'),
});

const permissions = z.array(permission).max(500)
  .describe('What the role grants: [{resource, scope}]; at a resource server with rbac, a token carries only the requested scopes its holder\'s roles grant');

const roleName = displayText(100).describe('Unique in the tenant; what the `roles` claim carries');

export const roleCreate = z.strictObject({
  name: roleName,
  description: displayText(500).optional(),
  permissions,
});

export const roleUpdate = z.strictObject({
  name: roleName.optional().describe('Not for a seeded role (typeId set): 409 IDENT_ROLE_BUILT_IN'),
  description: displayText(500).nullable().optional(),
  permissions: permissions.optional().describe('Replaces the role\'s permissions whole'),
});

export const role = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  permissions: z.array(z.object({ resource: z.string(), scope: z.string() })),
  typeId: z.string().nullable().describe('The identity service\'s user type of a seeded role: admin 100, regular 001, guest 000; null for the others'),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

export const roleIds = z.strictObject({
  roleIds: z.array(z.uuid()).min(1).max(100).describe('Roles of the acting tenant'),
});

export const heldRoles = z.object({ data: z.array(role) });

/**
 * Roles and their assignment. Giving or taking a role changes what its holder may do, so it needs
 * iam.roles:update (not iam.users:update, which alone must not raise anyone's permissions);
 * reading who holds what needs iam.roles:read.
 */
export const roleOperationSpecs = {
  'roles list': {
    method: 'get', path: '/roles', scope: 'iam.roles:read', summary: 'List the roles of the tenant (paginated)',
    query: pageQuery, response: { status: 200, schema: page(role) },
  },
  'roles create': {
    method: 'post', path: '/roles', scope: 'iam.roles:create', idempotent: true,
    summary: 'Create a role: a name unique in the tenant (409 IDENT_ROLE_DUPLICATE) and permissions naming registered resource servers and their scopes (400 otherwise)',
    body: roleCreate, response: { status: 201, schema: role },
  },
  'roles get': {
    method: 'get', path: '/roles/:id', scope: 'iam.roles:read', summary: 'Get a role (another tenant\'s: 403 IDENT_CROSS_TENANT)',
    response: { status: 200, schema: role },
  },
  'roles update': {
    method: 'patch', path: '/roles/:id', scope: 'iam.roles:update',
    summary: 'Change a role; its holders\' next tokens follow. A seeded role keeps its name',
    body: roleUpdate, response: { status: 200, schema: role },
  },
  'roles delete': {
    method: 'delete', path: '/roles/:id', scope: 'iam.roles:delete',
    summary: 'Delete a role and take it from every holder; a seeded role cannot be deleted (409 IDENT_ROLE_BUILT_IN)',
    response: { status: 204 },
  },
  'users roles': {
    method: 'get', path: '/users/:id/roles', scope: 'iam.roles:read', summary: 'The roles a user holds',
    response: { status: 200, schema: heldRoles },
  },
  'users assign-roles': {
    method: 'post', path: '/users/:id/roles', scope: 'iam.roles:update',
    summary: 'Give a user roles (those held stay); answers the roles held. User and roles must be in the acting tenant',
    body: roleIds, response: { status: 200, schema: heldRoles },
  },
  'users unassign-roles': {
    method: 'delete', path: '/users/:id/roles', scope: 'iam.roles:update',
    summary: 'Take roles from a user; answers the roles held',
    body: roleIds, response: { status: 200, schema: heldRoles },
  },
  'service-accounts roles': {
    method: 'get', path: '/service-accounts/:id/roles', scope: 'iam.roles:read', summary: 'The roles a service account holds',
    response: { status: 200, schema: heldRoles },
  },
  'service-accounts assign-roles': {
    method: 'post', path: '/service-accounts/:id/roles', scope: 'iam.roles:update',
    summary: 'Give a service account roles (its tokens get the scopes they grant); answers the roles held',
    body: roleIds, response: { status: 200, schema: heldRoles },
  },
  'service-accounts unassign-roles': {
    method: 'delete', path: '/service-accounts/:id/roles', scope: 'iam.roles:update',
    summary: 'Take roles from a service account; answers the roles held',
    body: roleIds, response: { status: 200, schema: heldRoles },
  },
} as const satisfies Record<string, OperationSpec>;

export type RoleCommand = keyof typeof roleOperationSpecs;
