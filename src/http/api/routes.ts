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
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import { normaliseClientMetadata } from '../../oidc/client-metadata.ts';
import type { IdempotencyRepo } from '../../repos/idempotency.ts';
import type { Tenants } from '../../domain/tenants/tenants.ts';
import { bearerAuth, callerActor, callerKey, requireScope, requireScopesWithinCaller, tenantScope, type Caller } from './auth.ts';
import { apiKeyHandlers } from './api-key-routes.ts';
import type { ApiKeys } from '../../domain/access/api-keys.ts';
import { createIdempotency } from './idempotency.ts';
import { identityProviderHandlers } from './identity-provider-routes.ts';
import { webhookHandlers } from './webhook-routes.ts';
import { roleHandlers } from './role-routes.ts';
import { serviceAccountHandlers } from './service-account-routes.ts';
import type { RoleCommand } from './role-schemas.ts';
import type { ServiceAccountCommand } from './service-account-schemas.ts';
import type { Access } from '../../domain/access/access.ts';
import type { Webhooks } from '../../domain/webhooks/webhooks.ts';
import { openApiDocument } from './openapi.ts';
import type { AccountOperation } from './account-routes.ts';
import { adminOperationSpecs, type AdminCommand, type AdminHandlers, type ApiKeyCommand, type AuditCommand, type IdentityProviderCommand, type TenantCommand, type UserMergeCommand, type WebhookCommand } from './admin-operations.ts';
import { tenantHandlers } from './tenant-routes.ts';
import type { AuditLog } from '../../domain/events/audit.ts';
import { auditHandlers } from './audit-routes.ts';
import { userMergeHandlers } from './user-merge-routes.ts';
import type { UserMerge } from '../../domain/accounts/user-merge.ts';
import type { Input, Operation } from './operation.ts';
import { checkBody, parse } from './validate.ts';
import { clientView, resourceServerView, userDetailView, userView } from './views.ts';

export interface AdminApiDeps {
  issuer: string;
  audience: string;
  publicJwks: JSONWebKeySet;
  tenants: Tenants;
  provider: Provider;
  users: UserAdmin;
  clients: ClientRegistry;
  resourceServers: ResourceServers;
  identityProviders: IdentityProviders;
  webhooks: Webhooks;
  idempotency: IdempotencyRepo;
  box: SecretBox;
  /** Documented in the same OpenAPI document (they share /api/v1). */
  accountOperations: AccountOperation[];
  audit: AuditLog;
  /** API keys: their routes, and Bearer idp_... as admin API credentials. */
  apiKeys: ApiKeys;
  userMerge: UserMerge;
  access: Access;
}

/** Events record which admin client (or API key) made a change, and in which request. */
const changeContext = (ctx: Context): ChangeContext => ({
  actor: callerActor(ctx.state.caller as Caller),
  requestId: ctx.state.requestId as string,
});

const pageOf = <T>(rows: T[], total: number, q: { page: number; pageSize: number }) => ({
  data: rows,
  page: q.page,
  pageSize: q.pageSize,
  total,
});

/** The operations table with its handlers, in the table's order. */
function operationsFrom(handlers: AdminHandlers): Operation[] {
  return (Object.keys(adminOperationSpecs) as AdminCommand[]).map((command) => ({
    ...adminOperationSpecs[command],
    command,
    handle: handlers[command],
  }));
}

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
    const row = await clients.get(tenantScope(ctx), clientId);
    const { scope } = row.metadata as { scope?: unknown };
    requireScopesWithinCaller(ctx, typeof scope === 'string' ? scope : undefined, `the client ${row.client_id} is registered with`);
    return row;
  }

  function clientMetadataFrom(clientId: string, body: Record<string, unknown>) {
    const { client_id: _id, client_secret: _secret, ...metadata } = body;
    const normalised = normaliseClientMetadata(provider, clientId, metadata);
    return { metadata: normalised, firstParty: normalised.first_party === true };
  }

  const handlers: AdminHandlers<Exclude<AdminCommand, IdentityProviderCommand | WebhookCommand | AuditCommand | ApiKeyCommand | UserMergeCommand | RoleCommand | ServiceAccountCommand | TenantCommand>> = {
    'users list': async (ctx, { query }) => {
      const { rows, total } = await users.list(tenantScope(ctx), query);
      return pageOf(rows.map(userView), total, query);
    },
    'users create': async (ctx, { body }) => {
      return userView(await users.create(tenantScope(ctx), body, changeContext(ctx)));
    },
    'users get': async (ctx, { params }) => {
      return userDetailView(await users.detail(tenantScope(ctx), params.id!));
    },
    'users reset-mfa': async (ctx, { params }) => {
      return userDetailView(await users.resetMfa(tenantScope(ctx), params.id!, changeContext(ctx)));
    },
    'users unlock': async (ctx, { params }) => {
      return userDetailView(await users.unlock(tenantScope(ctx), params.id!, changeContext(ctx)));
    },
    'users update': async (ctx, { params, body }) => {
      return userView(await users.update(tenantScope(ctx), params.id!, body, changeContext(ctx)));
    },
    'users delete': async (ctx, { params }) => {
      return userView(await users.deactivate(tenantScope(ctx), params.id!, changeContext(ctx)));
    },
    'users logout': async (ctx, { params }) => {
      await users.signOutEverywhere(tenantScope(ctx), params.id!, changeContext(ctx));
      return undefined;
    },
    'users suspend': async (ctx, { params }) => {
      return userView(await users.suspend(tenantScope(ctx), params.id!, changeContext(ctx)));
    },
    'users reactivate': async (ctx, { params }) => {
      return userView(await users.reactivate(tenantScope(ctx), params.id!, changeContext(ctx)));
    },
    'clients list': async (ctx, { query }) => {
      const { rows, total } = await clients.list(tenantScope(ctx), query.page, query.pageSize, { adminScopesWithin: heldAdminScopes(callerScopes(ctx)) });
      return pageOf(rows.map((r) => clientView(r)), total, query);
    },
    'clients create': async (ctx, { body }) => {
      assertGrantableScopes(ctx, body.scope);
      const clientId = (body.client_id as string | undefined) ?? crypto.randomUUID();
      const { metadata, firstParty } = clientMetadataFrom(clientId, body);
      const created = await clients.register(tenantScope(ctx), {
        metadata: { ...metadata, client_id: clientId, ...(body.client_secret ? { client_secret: body.client_secret } : {}) },
        firstParty,
      }, {}, changeContext(ctx));
      return clientView(await clients.get(tenantScope(ctx), clientId), created.client_secret as string | undefined);
    },
    'clients get': async (ctx, { params }) => {
      return clientView(await addressable(ctx, params.clientId!));
    },
    'clients update': async (ctx, { params, body }) => {
      const current = await addressable(ctx, params.clientId!);
      assertGrantableScopes(ctx, body.scope);
      const merged = { ...(current.metadata as Record<string, unknown>), first_party: current.first_party, ...body };
      const { metadata, firstParty } = clientMetadataFrom(current.client_id, merged);
      const { row, secret } = await clients.update(tenantScope(ctx), current.client_id, metadata, firstParty, changeContext(ctx));
      return clientView(row, secret);
    },
    'clients delete': async (ctx, { params }) => {
      await clients.remove(tenantScope(ctx), (await addressable(ctx, params.clientId!)).client_id, changeContext(ctx));
      return undefined;
    },
    'clients rotate-secret': async (ctx, { params }) => {
      const { client_id: clientId } = await addressable(ctx, params.clientId!);
      // The registry answers 400 for a client without a secret, 409 for a built-in one.
      return { client_id: clientId, client_secret: await clients.rotateSecret(tenantScope(ctx), clientId, changeContext(ctx)) };
    },
    'resource-servers list': async (ctx, { query }) => {
      const { rows, total } = await resourceServers.list(tenantScope(ctx), query.page, query.pageSize);
      return pageOf(rows.map(resourceServerView), total, query);
    },
    'resource-servers create': async (ctx, { body }) => {
      return resourceServerView(await resourceServers.create(tenantScope(ctx), body, changeContext(ctx)));
    },
    'resource-servers get': async (ctx, { params }) => {
      return resourceServerView(await resourceServers.get(tenantScope(ctx), params.id!));
    },
    'resource-servers update': async (ctx, { params, body }) => {
      return resourceServerView(await resourceServers.update(tenantScope(ctx), params.id!, body, changeContext(ctx)));
    },
    'resource-servers delete': async (ctx, { params }) => {
      await resourceServers.remove(tenantScope(ctx), params.id!, changeContext(ctx));
      return undefined;
    },
  };
  return operationsFrom({
    ...handlers,
    ...identityProviderHandlers({ issuer: deps.issuer, identityProviders: deps.identityProviders, changeContext }),
    ...webhookHandlers(deps.webhooks),
    ...auditHandlers(deps.audit),
    ...apiKeyHandlers({ apiKeys: deps.apiKeys, changeContext }),
    ...userMergeHandlers({ merge: deps.userMerge, users, changeContext }),
    ...roleHandlers(deps.access.roles, changeContext),
    ...serviceAccountHandlers(deps.access.serviceAccounts, changeContext),
    ...tenantHandlers({ tenants: deps.tenants, changeContext }),
  });
}

/** The admin REST API under /api/v1: bearer auth, scopes, schema validation, idempotency. */
export function adminApiRoutes(deps: AdminApiDeps) {
  const router = new Router({ prefix: '/api/v1' });
  const operations = adminOperations(deps);
  const document = openApiDocument(operations, deps.accountOperations, deps.issuer, deps.audience);
  const withIdempotency = createIdempotency({ repo: deps.idempotency, box: deps.box });
  const auth = bearerAuth({ issuer: deps.issuer, audience: deps.audience, publicJwks: deps.publicJwks, tenants: deps.tenants, apiKeys: deps.apiKeys });
  // DELETE too: taking roles away names them in the body (DELETE /users/:id/roles {roleIds}).
  const json = bodyParser({ enableTypes: ['json'], jsonLimit: '1mb', encoding: 'utf-8', parsedMethods: ['POST', 'PUT', 'PATCH', 'DELETE'] });

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
      // Keys are the caller's in the tenant it acts in: a replay never answers across tenants.
      if (op.idempotent) await withIdempotency(ctx, `${callerKey(ctx.state.caller as Caller)} ${(ctx.state.caller as Caller).tenantId}`, run);
      else await run();
    });
  }
  return router;
}
