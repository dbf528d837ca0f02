import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { JSONWebKeySet } from 'jose';
import type { Context } from 'koa';
import type Provider from 'oidc-provider';
import { heldAdminScopes } from '../../domain/clients/admin-scopes.ts';
import type { ClientRegistry } from '../../domain/clients/clients.ts';
import { AppError } from '../../domain/errors.ts';
import type { ResourceServers } from '../../domain/clients/resource-servers.ts';
import type { IdentityProviders } from '../../domain/federation/identity-providers.ts';
import type { UserAdmin } from '../../domain/accounts/user-admin.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import { normaliseClientMetadata } from '../../oidc/client-metadata.ts';
import type { IdempotencyRepo } from '../../repos/idempotency.ts';
import { bearerAuth, requireScope, requireScopesWithinCaller, type Caller } from './auth.ts';
import { createIdempotency } from './idempotency.ts';
import { identityProviderOperations } from './identity-provider-routes.ts';
import { openApiDocument } from './openapi.ts';
import type { AccountOperation } from './account-routes.ts';
import type { Input, Operation } from './operation.ts';
import * as s from './schemas.ts';
import { checkBody, parse } from './validate.ts';
import { clientView, resourceServerView, userDetailView, userView } from './views.ts';

export interface AdminApiDeps {
  issuer: string;
  audience: string;
  publicJwks: JSONWebKeySet;
  provider: Provider;
  users: UserAdmin;
  clients: ClientRegistry;
  resourceServers: ResourceServers;
  identityProviders: IdentityProviders;
  idempotency: IdempotencyRepo;
  box: SecretBox;
  /** Documented in the same OpenAPI document (they share /api/v1). */
  accountOperations: AccountOperation[];
}

/** Events record which admin client made a change, and in which request. */
const changeContext = (ctx: Context) => ({
  actor: (ctx.state.caller as Caller).clientId,
  requestId: ctx.state.requestId as string,
});

const pageOf = <T>(rows: T[], total: number, q: { page: number; pageSize: number }) => ({
  data: rows,
  page: q.page,
  pageSize: q.pageSize,
  total,
});

export function adminOperations(deps: AdminApiDeps): Operation[] {
  const { users, clients, resourceServers, provider } = deps;

  const callerScopes = (ctx: Context) => (ctx.state.caller as Caller).scopes;

  /**
   * A caller may give a client only the admin scopes it holds itself: iam.clients:create alone must
   * not be a way to mint a client with every iam.* scope.
   */
  function assertGrantableScopes(ctx: Context, scope: unknown) {
    if (typeof scope !== 'string') return;
    requireScopesWithinCaller(ctx, scope, 'a client can be given only admin scopes the caller holds; the request names');
  }

  /**
   * The client a call addresses, if the caller may: one holding admin scopes the caller's token
   * lacks is out of reach (403), or iam.clients:update alone could take over the bootstrap admin
   * client by rotating its secret or switching its authentication.
   */
  async function addressable(ctx: Context, clientId: string) {
    const row = await clients.get(clientId);
    const { scope } = row.metadata as { scope?: unknown };
    requireScopesWithinCaller(ctx, typeof scope === 'string' ? scope : undefined, `the client ${row.client_id} is registered with`);
    return row;
  }

  function clientMetadataFrom(clientId: string, body: Record<string, unknown>) {
    const { client_id: _id, client_secret: _secret, ...metadata } = body;
    const normalised = normaliseClientMetadata(provider, clientId, metadata);
    return { metadata: normalised, firstParty: normalised.first_party === true };
  }

  return [
    // Users
    {
      method: 'get', path: '/users', scope: 'iam.users:read', summary: 'List users (paginated; search matches email and names)',
      query: s.userListQuery, response: { status: 200, schema: s.page(s.user) },
      async handle(_ctx, { query }) {
        const { rows, total } = await users.list(query);
        return pageOf(rows.map(userView), total, query);
      },
    },
    {
      method: 'post', path: '/users', scope: 'iam.users:create', summary: 'Create a user', idempotent: true,
      body: s.userCreate, response: { status: 201, schema: s.user },
      async handle(ctx, { body }) {
        return userView(await users.create(body, changeContext(ctx)));
      },
    },
    {
      method: 'get', path: '/users/:id', scope: 'iam.users:read', summary: 'Get a user, with their second factors (mfa) and lockout (lock)',
      response: { status: 200, schema: s.userDetail },
      async handle(_ctx, { params }) {
        return userDetailView(await users.detail(params.id!));
      },
    },
    {
      method: 'post', path: '/users/:id/mfa/reset', scope: 'iam.users:update',
      summary: 'Remove every second factor of the user, end their sessions and tokens, and mail them (help desk)',
      response: { status: 200, schema: s.userDetail },
      async handle(ctx, { params }) {
        return userDetailView(await users.resetMfa(params.id!, changeContext(ctx)));
      },
    },
    {
      method: 'post', path: '/users/:id/unlock', scope: 'iam.users:update',
      summary: 'End a sign-in lockout at once: the account, its address and its second factors (help desk)',
      response: { status: 200, schema: s.userDetail },
      async handle(ctx, { params }) {
        return userDetailView(await users.unlock(params.id!, changeContext(ctx)));
      },
    },
    {
      method: 'patch', path: '/users/:id', scope: 'iam.users:update', summary: 'Update a user (a new password ends their sessions)',
      body: s.userUpdate, response: { status: 200, schema: s.user },
      async handle(ctx, { params, body }) {
        return userView(await users.update(params.id!, body, changeContext(ctx)));
      },
    },
    {
      method: 'delete', path: '/users/:id', scope: 'iam.users:delete', summary: 'Deactivate a user (soft delete; revokes sessions and tokens)',
      response: { status: 200, schema: s.user },
      async handle(ctx, { params }) {
        return userView(await users.deactivate(params.id!, changeContext(ctx)));
      },
    },
    {
      method: 'post', path: '/users/:id/suspend', scope: 'iam.users:suspend', summary: 'Suspend a user (revokes sessions and tokens)',
      response: { status: 200, schema: s.user },
      async handle(ctx, { params }) {
        return userView(await users.suspend(params.id!, changeContext(ctx)));
      },
    },
    {
      method: 'post', path: '/users/:id/reactivate', scope: 'iam.users:suspend', summary: 'Reactivate a suspended user',
      response: { status: 200, schema: s.user },
      async handle(ctx, { params }) {
        return userView(await users.reactivate(params.id!, changeContext(ctx)));
      },
    },

    // Clients
    {
      method: 'get', path: '/clients', scope: 'iam.clients:read',
      summary: 'List clients (no secrets); only those whose admin scopes the token holds all of',
      query: s.pageQuery, response: { status: 200, schema: s.page(s.client) },
      async handle(ctx, { query }) {
        const { rows, total } = await clients.list(query.page, query.pageSize, { adminScopesWithin: heldAdminScopes(callerScopes(ctx)) });
        return pageOf(rows.map((r) => clientView(r)), total, query);
      },
    },
    {
      method: 'post', path: '/clients', scope: 'iam.clients:create', idempotent: true,
      summary: 'Register a client (RFC 7591 metadata); the secret is in this answer only',
      body: s.clientCreate, response: { status: 201, schema: s.client },
      async handle(ctx, { body }) {
        assertGrantableScopes(ctx, body.scope);
        const clientId = (body.client_id as string | undefined) ?? crypto.randomUUID();
        const { metadata, firstParty } = clientMetadataFrom(clientId, body);
        const created = await clients.register({
          metadata: { ...metadata, client_id: clientId, ...(body.client_secret ? { client_secret: body.client_secret } : {}) },
          firstParty,
        });
        return clientView(await clients.get(clientId), created.client_secret as string | undefined);
      },
    },
    {
      method: 'get', path: '/clients/:clientId', scope: 'iam.clients:read', summary: 'Get a client (no secret)',
      response: { status: 200, schema: s.client },
      async handle(ctx, { params }) {
        return clientView(await addressable(ctx, params.clientId!));
      },
    },
    {
      method: 'patch', path: '/clients/:clientId', scope: 'iam.clients:update', summary: 'Change client metadata (merged over the current)',
      body: s.clientUpdate, response: { status: 200, schema: s.client },
      async handle(ctx, { params, body }) {
        const current = await addressable(ctx, params.clientId!);
        assertGrantableScopes(ctx, body.scope);
        const merged = { ...(current.metadata as Record<string, unknown>), first_party: current.first_party, ...body };
        const { metadata, firstParty } = clientMetadataFrom(current.client_id, merged);
        const { row, secret } = await clients.update(current.client_id, metadata, firstParty);
        return clientView(row, secret);
      },
    },
    {
      method: 'delete', path: '/clients/:clientId', scope: 'iam.clients:delete', summary: 'Delete a client and revoke its grants and tokens',
      response: { status: 204 },
      async handle(ctx, { params }) {
        await clients.remove((await addressable(ctx, params.clientId!)).client_id);
        return undefined;
      },
    },
    {
      method: 'post', path: '/clients/:clientId/secret', scope: 'iam.clients:update', summary: 'Rotate the client secret (the old one stops working at once)',
      response: { status: 200, schema: s.clientSecret },
      async handle(ctx, { params }) {
        const { client_id: clientId } = await addressable(ctx, params.clientId!);
        // The registry answers 400 for a client without a secret, 409 for a built-in one.
        return { client_id: clientId, client_secret: await clients.rotateSecret(clientId) };
      },
    },

    // Resource servers
    {
      method: 'get', path: '/resource-servers', scope: 'iam.resource-servers:read', summary: 'List resource servers',
      query: s.pageQuery, response: { status: 200, schema: s.page(s.resourceServer) },
      async handle(_ctx, { query }) {
        const { rows, total } = await resourceServers.list(query.page, query.pageSize);
        return pageOf(rows.map(resourceServerView), total, query);
      },
    },
    {
      method: 'post', path: '/resource-servers', scope: 'iam.resource-servers:create', summary: 'Register a resource server (RFC 8707 identifier)',
      body: s.resourceServerCreate, response: { status: 201, schema: s.resourceServer },
      async handle(_ctx, { body }) {
        return resourceServerView(await resourceServers.create(body));
      },
    },
    {
      method: 'get', path: '/resource-servers/:id', scope: 'iam.resource-servers:read', summary: 'Get a resource server',
      response: { status: 200, schema: s.resourceServer },
      async handle(_ctx, { params }) {
        return resourceServerView(await resourceServers.get(params.id!));
      },
    },
    {
      method: 'patch', path: '/resource-servers/:id', scope: 'iam.resource-servers:update', summary: 'Change a resource server',
      body: s.resourceServerUpdate, response: { status: 200, schema: s.resourceServer },
      async handle(_ctx, { params, body }) {
        return resourceServerView(await resourceServers.update(params.id!, body));
      },
    },
    {
      method: 'delete', path: '/resource-servers/:id', scope: 'iam.resource-servers:delete', summary: 'Delete a resource server',
      response: { status: 204 },
      async handle(_ctx, { params }) {
        await resourceServers.remove(params.id!);
        return undefined;
      },
    },

    ...identityProviderOperations({ issuer: deps.issuer, identityProviders: deps.identityProviders }),
  ];
}

/** The admin REST API under /api/v1: bearer auth, scopes, schema validation, idempotency. */
export function adminApiRoutes(deps: AdminApiDeps) {
  const router = new Router({ prefix: '/api/v1' });
  const operations = adminOperations(deps);
  const document = openApiDocument(operations, deps.accountOperations, deps.issuer, deps.audience);
  const withIdempotency = createIdempotency({ repo: deps.idempotency, box: deps.box });
  const auth = bearerAuth({ issuer: deps.issuer, audience: deps.audience, publicJwks: deps.publicJwks });
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '1mb', encoding: 'utf-8' });

  router.get('/openapi.json', (ctx) => {
    ctx.set('Cache-Control', 'no-cache');
    ctx.body = document;
  });

  for (const op of operations) {
    router[op.method](op.path, auth, async (ctx, next) => {
      requireScope(ctx, op.scope);
      if (op.body && !ctx.is('application/json')) {
        throw new AppError('IDENT_UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
      }
      await next();
    }, json, async (ctx) => {
      const input: Input = {
        params: ctx.params,
        query: op.query ? parse(op.query, ctx.query, 'query') : {},
        body: op.body ? parse(op.body, checkBody(ctx.request.body), 'body') : undefined,
      };
      const run = async () => {
        const result = await op.handle(ctx, input);
        ctx.status = op.response?.status ?? 200;
        if (result !== undefined) ctx.body = result;
      };
      ctx.set('Cache-Control', 'no-store');
      if (op.idempotent) await withIdempotency(ctx, (ctx.state.caller as Caller).clientId, run);
      else await run();
    });
  }
  return router;
}
