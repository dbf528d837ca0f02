import type Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { CredentialKind, WebAuthn } from '../../domain/authn/webauthn.ts';
import { AppError } from '../../domain/errors.ts';
import type { MessageKey } from '../../i18n/index.ts';
import { postedCredential } from '../interaction/webauthn.ts';

/** What the console shares with this module: its checks, its page and its redirects. */
export interface ConsoleParts<Signed extends { caller: { accountId: string; sessionUid?: string | undefined } }> {
  router: Router;
  form: Middleware;
  consoleUrl: string;
  /** A signed-in post with its CSRF token and within the user's budget; undefined when it answered already. */
  signedInPost(ctx: Context): Promise<Signed | undefined>;
  /** The console page again, with an error in the two-step section. */
  renderWithError(ctx: Context, signed: Signed, error: MessageKey, status: number): Promise<void>;
  seeOther(ctx: Context, url: string): void;
  changeContext(ctx: Context, accountId: string): ChangeContext;
  handle(work: (ctx: Context) => Promise<void>): Middleware;
}

const KINDS: readonly CredentialKind[] = ['passkey', 'security-key'];
const MAX_NAME = 64;

/**
 * "Add a passkey" and "Add a security key" in the console's two-step section. The page's script
 * (views/assets/webauthn.js) posts the form's fields to /mfa/webauthn/options for the creation
 * options (JSON), runs the browser's ceremony and posts the answer with the chosen name to
 * /mfa/webauthn/register. Removal is the section's shared "Remove" (mfa.remove).
 */
export function consoleWebAuthn<Signed extends { caller: { accountId: string; sessionUid?: string | undefined } }>(webauthn: WebAuthn, parts: ConsoleParts<Signed>) {
  const { router, form, consoleUrl, signedInPost, handle } = parts;
  const actions = {
    webauthnOptions: `${consoleUrl}/mfa/webauthn/options`,
    webauthnRegister: `${consoleUrl}/mfa/webauthn/register`,
  };

  router.post(
    '/mfa/webauthn/options',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const kind = (ctx.request.body as Record<string, unknown>).kind;
      if (!KINDS.includes(kind as CredentialKind)) throw new AppError('IDENT_VALIDATION', 'kind is passkey or security-key');
      ctx.body = await webauthn.registrationOptions(signed.caller.accountId, kind as CredentialKind);
    }),
  );

  router.post(
    '/mfa/webauthn/register',
    form,
    handle(async (ctx) => {
      const signed = await signedInPost(ctx);
      if (!signed) return;
      const body = ctx.request.body as Record<string, unknown>;
      const name = typeof body.name === 'string' && body.name.trim() ? body.name : undefined;
      if (body.name !== undefined && typeof body.name !== 'string') return parts.renderWithError(ctx, signed, 'account.mfa.error.webauthn_name', 400);
      if (name !== undefined && name.trim().length > MAX_NAME) return parts.renderWithError(ctx, signed, 'account.mfa.error.webauthn_name', 400);
      const response = postedCredential(body);
      if (response === undefined) return parts.renderWithError(ctx, signed, 'account.mfa.error.webauthn', 400);
      try {
        await webauthn.register(signed.caller.accountId, response, name, signed.caller.sessionUid, parts.changeContext(ctx, signed.caller.accountId));
      } catch (err) {
        if (!(err instanceof AppError)) throw err;
        if (err.code === 'IDENT_WEBAUTHN_INVALID') return parts.renderWithError(ctx, signed, 'account.mfa.error.webauthn', 400);
        if (err.code === 'IDENT_VALIDATION') return parts.renderWithError(ctx, signed, 'account.mfa.error.webauthn_name', 400);
        throw err;
      }
      parts.seeOther(ctx, `${consoleUrl}?done=mfa_webauthn`);
    }),
  );

  return {
    actions,

    /** Passkey or security key, per factor id, for the section's list. */
    async kinds(accountId: string): Promise<Map<string, CredentialKind>> {
      return new Map((await webauthn.devices(accountId)).map((d) => [d.id, d.kind]));
    },
  };
}
