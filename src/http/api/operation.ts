import type { Context } from 'koa';
import type { z } from 'zod';
import type { AdminScope } from '../../domain/clients/admin-scopes.ts';

export interface Input {
  body: any;
  query: any;
  params: Record<string, string>;
}

/** One admin API operation: validation, scope, answer and OpenAPI entry come from this record. */
export interface Operation {
  method: 'get' | 'post' | 'patch' | 'delete';
  path: string;
  scope: AdminScope;
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  response?: { status: number; schema?: z.ZodType };
  idempotent?: boolean;
  handle(ctx: Context, input: Input): Promise<unknown>;
}
