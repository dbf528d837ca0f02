import type { Context } from 'koa';
import type { z } from 'zod';
import type { AdminScope } from '../../domain/clients/admin-scopes.ts';

export interface Input {
  body: any;
  query: any;
  params: Record<string, string>;
}

/**
 * What an admin API operation is, without how it is done: method, path, scope, schemas. Pure data,
 * so the CLI reads the same records the routes and the OpenAPI document are made from.
 */
export interface OperationSpec {
  method: 'get' | 'post' | 'patch' | 'delete';
  path: string;
  scope: AdminScope;
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  response?: { status: number; schema?: z.ZodType };
  idempotent?: boolean;
}

export type Handler = (ctx: Context, input: Input) => Promise<unknown>;

/** One admin API operation: validation, scope, answer and OpenAPI entry come from this record. */
export interface Operation extends OperationSpec {
  /** The idp CLI command that calls it, e.g. "users update" (its key in the operations table). */
  command: string;
  handle: Handler;
}
