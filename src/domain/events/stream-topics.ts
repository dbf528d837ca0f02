import { AppError } from '../errors.ts';
import { matchesTypes, parseTypePatterns, type TypePatterns } from './audit.ts';
import type { RecordedEvent } from './events.ts';
import type { TenantScope } from '../tenants/tenant-scope.ts';

// The reference system's WebSocket topic families (IdentitySocketEventService: user auth state,
// role/permission update, profile update), as filters over our dotted event types, so a dashboard
// written against those topics subscribes to the same things here.

const AUTH_STATE_TYPES = new Set([
  'user.signed_in', 'user.signed_out', 'user.sign_in_failed', 'user.mfa_login', 'user.locked', 'user.unlocked',
  'user.suspended', 'user.reactivated', 'user.deleted', 'user.session_revoked', 'user.signed_out_everywhere',
]);
const PROFILE_TYPES = new Set(['user.updated', 'user.email_verified']);

export const STREAM_TOPICS = {
  /** Sign-in, sign-out, sessions ended, status change (suspend, reactivate, delete, lock). */
  'auth-state': (e: RecordedEvent) => AUTH_STATE_TYPES.has(e.type),
  /** Changes to what clients and users may do: client, resource server (scope), role and service account definitions, role assignments. */
  permissions: (e: RecordedEvent) => ['client.', 'resource_server.', 'role.', 'service_account.'].some((p) => e.type.startsWith(p)) || e.type === 'user.roles_changed',
  /** Profile changes (names, email, locale; status changes are their own types). */
  profile: (e: RecordedEvent) => PROFILE_TYPES.has(e.type),
} as const satisfies Record<string, (e: RecordedEvent) => boolean>;

export type StreamTopic = keyof typeof STREAM_TOPICS;

/**
 * Which events a stream sends: those of any listed type or any listed topic; all of them when
 * neither is given. Both are comma-separated lists.
 */
export function streamFilter(scope: TenantScope, opts: { types?: string | undefined; topics?: string | undefined }): (e: RecordedEvent) => boolean {
  const matches = typeFilter(opts);
  // A stream is one tenant's: the scope's, whatever the filters.
  return (e) => e.tenantId === scope.tenantId && matches(e);
}

function typeFilter(opts: { types?: string | undefined; topics?: string | undefined }): (e: RecordedEvent) => boolean {
  const types: TypePatterns | undefined = opts.types === undefined ? undefined : parseTypePatterns(opts.types, 'types');
  const topics = opts.topics === undefined ? [] : opts.topics.split(',').map((t) => t.trim());
  for (const topic of topics) {
    if (!Object.hasOwn(STREAM_TOPICS, topic)) {
      throw new AppError('IDENT_VALIDATION', `topics: "${topic.slice(0, 64)}" is not a topic (${Object.keys(STREAM_TOPICS).join(', ')})`);
    }
  }
  const predicates = topics.map((t) => STREAM_TOPICS[t as StreamTopic]);
  if (!types && !predicates.length) return () => true;
  return (e) => (types !== undefined && matchesTypes(types, e.type)) || predicates.some((p) => p(e));
}
