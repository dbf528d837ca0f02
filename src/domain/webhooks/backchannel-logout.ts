import { randomUUID } from 'node:crypto';
import type { OidcPayloadsRepo, SessionRow } from '../../repos/oidc-payloads.ts';
import type { WebhooksRepo } from '../../repos/webhooks.ts';

/**
 * OpenID Connect Back-Channel Logout 1.0: when a session ends, every relying party that took part
 * in it and registered a backchannel_logout_uri is told, with a logout token signed by the
 * provider. The notifications go through the webhook queue (kind backchannel_logout), so they are
 * sent off the request path, by whichever instance claims them, and retried like webhook
 * deliveries. The token is made at send time (oidc/backchannel-logout.ts): a retry carries a fresh
 * `iat`, which receivers check.
 */

export interface LogoutNotice {
  clientId: string;
  /** The account whose session ended (the token's `sub`, made pairwise for clients that ask for it). */
  accountId: string;
  /** The session's id as this client knows it (`sid` of its ID tokens). */
  sid: string | undefined;
}

interface SessionAuthorizations {
  accountId?: string;
  authorizations?: Record<string, { sid?: string }>;
}

export function createBackchannelLogouts(deps: {
  repo: Pick<WebhooksRepo, 'enqueue'>;
  /** Whether the client registered a backchannel_logout_uri (its cached record). */
  wantsLogouts: (clientId: string) => Promise<boolean>;
  retryWindowMs: number;
}) {
  async function enqueue(notices: LogoutNotice[]): Promise<void> {
    const wanted: LogoutNotice[] = [];
    for (const notice of notices) if (await deps.wantsLogouts(notice.clientId)) wanted.push(notice);
    await deps.repo.enqueue(
      wanted.map((n) => ({
        id: randomUUID(),
        kind: 'backchannel_logout' as const,
        webhook_id: null,
        event_id: randomUUID(),
        event_type: 'backchannel_logout',
        body: JSON.stringify({ clientId: n.clientId, accountId: n.accountId, sid: n.sid ?? null }),
      })),
      deps.retryWindowMs,
    );
  }

  /** The notices for sessions about to end: one per client that signed in through each. */
  function noticesFor(sessions: Array<Pick<SessionRow, 'payload'>>): LogoutNotice[] {
    const notices: LogoutNotice[] = [];
    for (const { payload } of sessions) {
      const { accountId, authorizations } = payload as SessionAuthorizations;
      if (!accountId || !authorizations) continue;
      for (const [clientId, { sid }] of Object.entries(authorizations)) notices.push({ clientId, accountId, sid });
    }
    return notices;
  }

  return {
    enqueue,
    forSessions: (sessions: Array<Pick<SessionRow, 'payload'>>) => enqueue(noticesFor(sessions)),
  };
}

export type BackchannelLogouts = ReturnType<typeof createBackchannelLogouts>;

/** What a queued notification's body holds. */
export function readLogoutNotice(body: string): LogoutNotice {
  const parsed = JSON.parse(body) as { clientId: string; accountId: string; sid: string | null };
  return { clientId: parsed.clientId, accountId: parsed.accountId, sid: parsed.sid ?? undefined };
}

/**
 * The payloads repository with every way of ending sessions outside the provider's own logout
 * (logout-all, a session revoked from the account console or API, suspension, deactivation,
 * password reset and change, an MFA reset, SAML single logout) queueing back-channel logouts for
 * the sessions it ended. The sessions are read before and the notices queued after the
 * revocation: a failure to queue never leaves a session alive. The provider's end_session goes
 * through its Client.backchannelLogout instead (oidc/backchannel-logout.ts).
 */
export function withBackchannelLogout(payloads: OidcPayloadsRepo, logouts: () => BackchannelLogouts): OidcPayloadsRepo {
  const wrapped: OidcPayloadsRepo = {
    ...payloads,
    async revokeByAccountId(accountId) {
      const sessions = await payloads.listSessions(accountId);
      await payloads.revokeByAccountId.call(wrapped, accountId);
      await logouts().forSessions(sessions);
    },
    // revokeAccountExcept ends each other session through this one (`this` is the wrapper).
    async revokeSession(session) {
      await payloads.revokeSession.call(wrapped, session);
      await logouts().forSessions([session]);
    },
  };
  return wrapped;
}
