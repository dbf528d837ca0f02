import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Accounts } from '../domain/authn/accounts.ts';
import type { Logger } from '../infra/logger.ts';
import type { Provider } from '../oidc/provider.ts';

/**
 * A sign-out at the end-session endpoint records user.signed_out: the provider ends the session
 * itself, and tells of it only by its end_session.success event. The listener runs inside the
 * request (its scope gives the event the address, user agent and request id); the record is not
 * awaited by the provider, so its failure is logged, never the user's.
 */
export function recordSignOuts(provider: Provider, accounts: Pick<Accounts, 'recordSignOut'>, logger: Logger): void {
  provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
    const accountId = ctx.oidc.session?.accountId;
    if (!accountId) return;
    const clientId = ctx.oidc.client?.clientId;
    accounts
      .recordSignOut(accountId, { sessionEnded: Boolean(ctx.oidc.params?.logout) }, {
        ...(clientId ? { clientId } : {}),
        requestId: (ctx.state as { requestId?: string }).requestId ?? null,
      })
      .catch((err: unknown) => logger.error({ err }, 'recording a sign-out failed'));
  });
}
