import type { Context } from 'koa';
import { AppError } from '../../domain/errors.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import { CONSOLE_LINK_PREFIX } from '../../domain/federation/sign-in-records.ts';
import { randomToken } from '../../infra/crypto.ts';
import type { MessageKey } from '../../i18n/index.ts';
import type { FederationBinding } from '../federation-binding.ts';
import type { ConsoleParts } from './console-webauthn.ts';


const ERRORS: Record<string, MessageKey> = {
  IDENT_LAST_SIGN_IN_METHOD: 'account.identities.error.last',
  IDENT_EXT_IDENTITY_MISMATCH: 'account.identities.error.taken',
  IDENT_NOT_FOUND: 'account.identities.error.not_found',
  IDENT_FEDERATION_UNAVAILABLE: 'federation.unavailable',
};

type Signed = { sessionId: string; caller: { accountId: string; sessionUid?: string | undefined } };

/**
 * "Sign-in services" in the account console: the providers linked to the account, each unlinkable
 * (never the last way in), and a "Link …" control per other provider. Linking is a sign-in at the
 * provider: it starts here (bound to this browser and this console session), comes back through
 * the federation callback, and lands on /identities/linked, where the identity is linked to the
 * signed-in user: the user proved this account by being signed in, and the upstream account by
 * signing in there, so the addresses need not match.
 */
export function consoleIdentities<S extends Signed>(
  federation: Federation,
  binding: FederationBinding,
  parts: ConsoleParts<S> & { signedIn(ctx: Context): Promise<S | undefined>; problem(ctx: Context, message: MessageKey, status: number): void },
) {
  const { router, form, consoleUrl, signedInPost, handle } = parts;
  const refusal = (ctx: Context, signed: S, err: unknown) => {
    if (!(err instanceof AppError) || !ERRORS[err.code]) throw err;
    return parts.renderWithError(ctx, signed, ERRORS[err.code]!, err.status);
  };

  router.post('/identities/link/:alias', form, handle(async (ctx) => {
    const signed = await signedInPost(ctx);
    if (!signed) return;
    const provider = await federation.identityProviders.enabledByAlias(ctx.params.alias!);
    if (!provider || provider.type === 'saml') return parts.renderWithError(ctx, signed, 'account.identities.error.not_found', 404);
    const checks = federation.upstream.newChecks(provider);
    try {
      const url = await federation.upstream.authorizationUrl(provider, checks);
      await federation.records.saveRequest({
        uid: `${CONSOLE_LINK_PREFIX}${randomToken(24)}`,
        providerId: provider.id,
        checks,
        binding: binding.bind(ctx),
        linkFor: { userId: signed.caller.accountId, sessionId: signed.sessionId },
      });
      parts.seeOther(ctx, url.href);
    } catch (err) {
      return refusal(ctx, signed, err);
    }
  }));

  router.get('/identities/linked', handle(async (ctx) => {
    const signed = await parts.signedIn(ctx);
    if (!signed) return parts.problem(ctx, 'account.problem.signin_expired', 400);
    const token = typeof ctx.query.t === 'string' ? ctx.query.t : '';
    const key = `${CONSOLE_LINK_PREFIX}${token}`;
    const result = token ? await federation.records.peekResult(key) : undefined;
    // Only the console session that started the link may finish it.
    if (!result || result.linkFor?.userId !== signed.caller.accountId || result.linkFor.sessionId !== signed.sessionId) {
      return parts.renderWithError(ctx, signed, 'federation.expired', 400);
    }
    await federation.records.dropResult(key);
    if ('error' in result) return parts.renderWithError(ctx, signed, result.error === 'unavailable' ? 'federation.unavailable' : 'federation.rejected', result.error === 'unavailable' ? 503 : 400);
    const provider = (await federation.identityProviders.enabled()).find((p) => p.id === result.providerId);
    if (!provider) return parts.renderWithError(ctx, signed, 'account.identities.error.not_found', 404);
    try {
      await federation.accounts.linkTo(signed.caller.accountId, provider, result.identity, parts.changeContext(ctx, signed.caller.accountId));
    } catch (err) {
      return refusal(ctx, signed, err);
    }
    parts.seeOther(ctx, `${consoleUrl}?done=identity_linked`);
  }));

  router.post('/identities/unlink', form, handle(async (ctx) => {
    const signed = await signedInPost(ctx);
    if (!signed) return;
    const id = (ctx.request.body as Record<string, unknown>).identity;
    try {
      await federation.accounts.unlink(signed.caller.accountId, typeof id === 'string' ? id : '', parts.changeContext(ctx, signed.caller.accountId));
    } catch (err) {
      return refusal(ctx, signed, err);
    }
    parts.seeOther(ctx, `${consoleUrl}?done=identity_unlinked`);
  }));

  return {
    notices: { identity_linked: 'account.identities.done.linked', identity_unlinked: 'account.identities.done.unlinked' } satisfies Record<string, MessageKey>,

    /** The section's content: what is linked, and what could be (the providers of the user's tenant). */
    async view(accountId: string, tenantId: string, format: (d: Date) => string) {
      const linked = await federation.accounts.list(accountId);
      const linkedAliases = new Set(linked.map((l) => l.providerAlias));
      const available = (await federation.identityProviders.enabled(tenantId)).filter((p) => p.type !== 'saml' && !linkedAliases.has(p.alias));
      return {
        linked: linked.map((l) => ({ id: l.id, name: l.providerName, email: l.email, linkedAt: format(l.linkedAt), lastLoginAt: l.lastLoginAt ? format(l.lastLoginAt) : undefined })),
        available: available.map((p) => ({ name: p.displayName, action: `${consoleUrl}/identities/link/${encodeURIComponent(p.alias)}` })),
        unlinkAction: `${consoleUrl}/identities/unlink`,
      };
    },
  };
}
