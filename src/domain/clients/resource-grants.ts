import { AppError } from '../errors.ts';
import type { ResourceServers } from './resource-servers.ts';

/**
 * A machine client's grants (Auth0's client grants, Hydra's allowed audiences and scopes): client
 * metadata mapping a resource server's identifier to the space-separated scopes the client may get
 * there by client_credentials. A client reaches a resource server only through such a grant, and
 * only for scopes the resource server still defines.
 */
export const RESOURCE_SCOPES = 'resource_scopes';

export type ResourceScopes = Record<string, string>;

const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/;
const MAX_GRANTS = 100;

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) && Object.getPrototypeOf(value) === Object.prototype;

/** The shape check (no store needed): what the provider's client schema runs on every client it reads. */
export function resourceScopesShapeError(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const why = 'resource_scopes must be an object mapping resource server identifiers to space-separated scopes';
  if (!isPlainObject(value)) return why;
  const entries = Object.entries(value);
  if (entries.length > MAX_GRANTS) return `resource_scopes may name at most ${MAX_GRANTS} resource servers`;
  for (const [resource, scopes] of entries) {
    if (!URL.canParse(resource) || resource.includes('#')) return `${why}; ${JSON.stringify(resource.slice(0, 100))} is not an absolute URI`;
    if (typeof scopes !== 'string' || !scopes.split(' ').every((s) => SCOPE_TOKEN.test(s))) {
      return `${why}; the scopes for ${resource} are not space-separated scope tokens`;
    }
  }
  return undefined;
}

/** The scopes `metadata` grants the client at `resource` (none when it names no grant there). */
export function grantedScopes(metadata: Record<string, unknown> | { [RESOURCE_SCOPES]?: unknown }, resource: string): string[] {
  const grants = (metadata as Record<string, unknown>)[RESOURCE_SCOPES];
  if (!isPlainObject(grants) || !Object.hasOwn(grants, resource)) return [];
  const scopes = grants[resource];
  return typeof scopes === 'string' ? scopes.split(' ').filter(Boolean) : [];
}

/**
 * Every grant `next` adds to `previous` must name a registered resource server and scopes it
 * defines (400 otherwise). What a client already held is not checked again: a resource server's
 * scope deleted since stays in the grant harmlessly (tokens get only scopes the server still
 * defines), and the client can still be renamed without first cleaning its grants.
 */
export async function assertGrantsDefined(
  resourceServers: Pick<ResourceServers, 'find'>,
  next: Record<string, unknown>,
  previous: Record<string, unknown> = {},
  /** The client's tenant: grants go to its own resource servers only (another tenant's reads as unregistered). */
  tenantId?: string,
): Promise<void> {
  const grants = next[RESOURCE_SCOPES];
  const shapeError = resourceScopesShapeError(grants);
  if (shapeError) throw new AppError('IDENT_VALIDATION', shapeError);
  for (const resource of Object.keys((grants ?? {}) as ResourceScopes)) {
    const held = new Set(grantedScopes(previous, resource));
    const added = grantedScopes(next, resource).filter((s) => !held.has(s));
    if (!added.length) continue;
    const server = await resourceServers.find(resource);
    if (!server || (tenantId !== undefined && server.tenantId !== tenantId)) {
      throw new AppError('IDENT_VALIDATION', `resource_scopes: ${resource} is not a registered resource server of this tenant`);
    }
    const defined = new Set(server.scopes);
    const unknown = added.filter((s) => !defined.has(s));
    if (unknown.length) {
      throw new AppError('IDENT_VALIDATION', `resource_scopes: ${resource} does not define the scopes ${unknown.join(' ')}`);
    }
  }
}
