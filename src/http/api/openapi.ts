import { z } from 'zod';
import type { AccountOperation } from './account-routes.ts';
import type { Operation } from './operation.ts';
import * as s from './schemas.ts';

const json = (schema: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(schema, { io, unrepresentable: 'any' });

/** The parts of an operation every entry has, whichever API it belongs to. */
function entry(op: Pick<Operation, 'path' | 'summary' | 'body' | 'response'>, security: unknown[], extraParams: unknown[] = []) {
  const errorResponse = { description: 'Error', content: { 'application/json': { schema: json(s.errorEnvelope, 'output') } } };
  const pathParams = [...op.path.matchAll(/:(\w+)/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
  return {
    summary: op.summary,
    security,
    parameters: [...pathParams, ...extraParams],
    ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: json(op.body, 'input') } } } } : {}),
    responses: {
      [String(op.response?.status ?? 200)]: op.response?.schema
        ? { description: 'Success', content: { 'application/json': { schema: json(op.response.schema, 'output') } } }
        : { description: 'Success' },
      '4XX': errorResponse,
    },
  };
}

const openApiPath = (path: string) => `/api/v1${path.replace(/:(\w+)/g, '{$1}')}`;

/**
 * OpenAPI 3.1 of both APIs under /api/v1 (admin and account), generated from the same operations
 * and schemas that validate requests.
 */
export function openApiDocument(operations: Operation[], accountOps: AccountOperation[], issuer: string, audience: string) {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    const path = openApiPath(op.path);
    const queryParams = op.query
      ? Object.entries((json(op.query, 'input') as { properties?: Record<string, unknown>; required?: string[] }).properties ?? {}).map(
          ([name, schema]) => ({ name, in: 'query', required: false, schema }),
        )
      : [];
    paths[path] ??= {};
    paths[path][op.method] = {
      ...entry(op, [{ bearer: [op.scope] }], [
        ...queryParams,
        ...(op.idempotent ? [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 255 } }] : []),
      ]),
      // The idp CLI command made from the same table entry.
      'x-idp-command': `idp ${op.command}`,
    };
  }
  for (const op of accountOps) {
    const path = openApiPath(op.path);
    paths[path] ??= {};
    paths[path][op.method] = {
      ...entry(op, op.auth === 'user' ? [{ user: op.scope ? ['openid', op.scope] : ['openid'] }] : []),
      ...(op.firstPartyOnly
        ? { description: 'Account management: only tokens issued to first-party clients (first_party: true); others get 403 IDENT_FORBIDDEN.', 'x-first-party-only': true }
        : {}),
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'idp admin and account API', version: '1' },
    servers: [{ url: issuer }],
    components: {
      securitySchemes: {
        user: {
          type: 'http',
          scheme: 'bearer',
          description: 'An opaque access token this provider issued to the user (the tokens userinfo accepts: scope openid, no resource indicator)',
        },
        bearer: {
          type: 'oauth2',
          description: `JWT access token for the resource ${audience} (client_credentials with resource=${audience}), or an API key (Bearer idp_..., POST /api-keys) with the scopes it carries`,
          flows: {
            clientCredentials: {
              tokenUrl: `${issuer}/token`,
              scopes: Object.fromEntries(s.adminScope.options.map((sc) => [sc, sc])),
            },
          },
        },
      },
    },
    paths,
  };
}
