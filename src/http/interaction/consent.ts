import type { Context } from 'koa';
import { translate, type MessageKey } from '../../i18n/index.ts';
import { detailsOf, finish, type Details, type InteractionDeps, type Shared } from './shared.ts';

const STANDARD_SCOPES = new Set(['openid', 'profile', 'email', 'offline_access', 'roles']);

/** The consent step: its page (GET / while consent is pending) and POST /confirm. */
export function consentStep(shared: Shared, deps: InteractionDeps) {
  const { provider, accounts, csrf, renderPage } = deps;
  const { localeOf, clientNameOf } = shared;

  /** Grants what the consent prompt asks for and resumes the authorization. */
  async function grantConsent(ctx: Context, details: Details) {
    if (details.prompt.name !== 'consent' || !details.session) ctx.throw(400, 'no consent is pending');
    const { accountId } = details.session!;
    const clientId = details.params.client_id as string;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId });
    if (!grant) ctx.throw(400, 'grant expired');
    const promptDetails = details.prompt.details as {
      missingOIDCScope?: string[];
      missingOIDCClaims?: string[];
      missingResourceScopes?: Record<string, string[]>;
    };
    if (promptDetails.missingOIDCScope) grant!.addOIDCScope(promptDetails.missingOIDCScope.join(' '));
    if (promptDetails.missingOIDCClaims) grant!.addOIDCClaims(promptDetails.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(promptDetails.missingResourceScopes ?? {})) {
      grant!.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant!.save();
    // The sign-in of this authorization came in the previous submission; without it in this
    // result a requested prompt=login counts as unanswered and the login page comes back forever.
    const login = details.lastSubmission?.login;
    await finish(ctx, details, { ...(login ? { login } : {}), consent: { grantId } });
  }

  return {
    async confirm(ctx: Context) {
      await grantConsent(ctx, detailsOf(ctx));
    },

    async show(ctx: Context, details: Details) {
      // First-party clients are trusted by the operator: even an explicit prompt=consent (needed
      // for offline_access) is answered without a screen.
      const client = await provider.Client.find(details.params.client_id as string);
      if (client?.first_party === true) return grantConsent(ctx, details);
      const session = details.session;
      const user = session ? await accounts.findActive(session.accountId) : undefined;
      const missingOIDC = (details.prompt.details.missingOIDCScope as string[] | undefined) ?? [];
      const locale = localeOf(ctx, details);
      return renderPage(ctx, 'consent', {
        title: 'consent.title',
        locale,
        clientName: await clientNameOf(details),
        email: user?.email ?? '',
        scopes: missingOIDC.map((scope) => ({
          label: STANDARD_SCOPES.has(scope)
            ? translate(locale, `consent.scope.${scope}` as MessageKey)
            : translate(locale, 'consent.scope.other', { scope }),
        })),
        resources: Object.entries(
          (details.prompt.details.missingResourceScopes as Record<string, string[]> | undefined) ?? {},
        ).map(([identifier, scopes]) => ({ identifier, scopes })),
        action: `/interaction/${details.uid}/confirm`,
        abortAction: `/interaction/${details.uid}/abort`,
        csrf: csrf.issue(details.uid),
      });
    },
  };
}
