import type Provider from 'oidc-provider';
import { AppError } from '../domain/errors.ts';

// Stored apart from the metadata (client_id, secret) or derived when the client is read.
const NOT_STORED = new Set(['client_id', 'client_secret', 'client_secret_expires_at', 'client_id_issued_at']);

/**
 * Validates RFC 7591 client metadata with the provider's own client schema (the same rules it
 * applies when the client is used) and returns it normalised, defaults filled in and unknown
 * fields dropped, ready to store.
 */
export function normaliseClientMetadata(provider: Provider, clientId: string, metadata: Record<string, unknown>) {
  let client;
  try {
    // A placeholder secret: whether one is needed is the registry's business, not the schema's.
    const ClientClass = provider.Client as unknown as new (m: object) => { metadata(): Record<string, unknown> };
    client = new ClientClass({ ...metadata, client_id: clientId, client_secret: 'x'.repeat(43) });
  } catch (err) {
    const e = err as { error?: string; error_description?: string; message?: string };
    const why = e.error_description ?? e.message ?? 'invalid client metadata';
    // `scope` lists the provider's own scopes; a resource server's are granted per server.
    const hint = why.startsWith('scope must only contain') ? ' (openid, profile, email, offline_access, iam.*); grant a resource server\'s scopes with resource_scopes' : '';
    throw new AppError('IDENT_VALIDATION', `${why}${hint}`);
  }
  return Object.fromEntries(Object.entries(client.metadata()).filter(([k]) => !NOT_STORED.has(k)));
}
