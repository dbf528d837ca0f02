import { randomUUID } from 'node:crypto';
import type Provider from 'oidc-provider';
import type { LogoutNotice } from '../domain/webhooks/backchannel-logout.ts';

const LOGOUT_EVENT = 'http://schemas.openid.net/event/backchannel-logout';

/**
 * The provider's end_session calls Client.backchannelLogout(accountId, sid) for each client of
 * the session and awaits the POST inside the logout request, once, with no retry. Here it queues
 * the notification instead (the webhook queue sends it, retried like a webhook delivery), so a
 * slow or dead relying party never holds up a logout.
 */
export function useQueuedBackchannelLogout(provider: Provider, enqueue: (notices: LogoutNotice[]) => Promise<void>): void {
  Object.defineProperty(provider.Client.prototype, 'backchannelLogout', {
    configurable: true,
    value: async function backchannelLogout(this: { clientId: string }, accountId: string, sid: string | undefined) {
      await enqueue([{ clientId: this.clientId, accountId, sid }]);
    },
  });
}

/**
 * A logout token (OpenID Connect Back-Channel Logout 1.0 §2.4) for a queued notification, made
 * when it is sent: as the provider makes it (an ID token without nonce, `events` naming the
 * back-channel logout event, a fresh `jti`, the `sub` pairwise when the client asks, and `sid` for
 * clients registered with backchannel_logout_session_required, whose ID tokens carry it). Undefined when the client no longer exists or no longer has a
 * backchannel_logout_uri.
 */
export async function logoutTokenFor(provider: Provider, notice: LogoutNotice): Promise<{ uri: string; token: string } | undefined> {
  const client = await provider.Client.find(notice.clientId);
  if (!client?.backchannelLogoutUri) return undefined;
  const token = new provider.IdToken({ sub: notice.accountId }, { client });
  (token as unknown as { mask: Record<string, null> }).mask = { sub: null };
  token.set('events', { [LOGOUT_EVENT]: {} });
  token.set('jti', randomUUID());
  if (notice.sid && client.backchannelLogoutSessionRequired) token.set('sid', notice.sid);
  return { uri: client.backchannelLogoutUri, token: await token.issue({ use: 'logout' }) };
}
