import { z } from 'zod';
import type { Operation } from './operation.ts';
import * as s from './schemas.ts';

/** OpenAPI 3.1, generated from the same operations and schemas that validate requests. */
export function openApiDocument(operations: Operation[], issuer: string, audience: string) {
  const json = (schema: z.ZodType, io: 'input' | 'output') => z.toJSONSchema(schema, { io, unrepresentable: 'any' });
  const errorResponse = { description: 'Error', content: { 'application/json': { schema: json(s.errorEnvelope, 'output') } } };
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of operations) {
    const path = `/api/v1${op.path.replace(/:(\w+)/g, '{$1}')}`;
    const pathParams = [...op.path.matchAll(/:(\w+)/g)].map((m) => ({
      name: m[1], in: 'path', required: true, schema: { type: 'string' },
    }));
    const queryParams = op.query
      ? Object.entries((json(op.query, 'input') as { properties?: Record<string, unknown>; required?: string[] }).properties ?? {}).map(
          ([name, schema]) => ({ name, in: 'query', required: false, schema }),
        )
      : [];
    paths[path] ??= {};
    paths[path][op.method] = {
      summary: op.summary,
      security: [{ bearer: [op.scope] }],
      parameters: [
        ...pathParams,
        ...queryParams,
        ...(op.idempotent ? [{ name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 255 } }] : []),
      ],
      ...(op.body ? { requestBody: { required: true, content: { 'application/json': { schema: json(op.body, 'input') } } } } : {}),
      responses: {
        [String(op.response?.status ?? 200)]: op.response?.schema
          ? { description: 'Success', content: { 'application/json': { schema: json(op.response.schema, 'output') } } }
          : { description: 'Success' },
        '4XX': errorResponse,
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'idp admin API', version: '1' },
    servers: [{ url: issuer }],
    components: {
      securitySchemes: {
        bearer: {
          type: 'oauth2',
          description: `JWT access token for the resource ${audience} (client_credentials with resource=${audience})`,
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
