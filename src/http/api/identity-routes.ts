import type { Context } from 'koa';
import { z } from 'zod';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { Federation } from '../../domain/federation/federation.ts';
import type { AccountOperation } from './account-routes.ts';
import type { UserCaller } from './user-auth.ts';

const linkedIdentity = z.object({
  id: z.string(),
  provider: z.object({ alias: z.string(), displayName: z.string(), type: z.enum(['oidc', 'oauth2', 'saml']) }),
  email: z.string().nullable().describe('What the provider said at the last sign-in'),
  linkedAt: z.iso.datetime(),
  lastLoginAt: z.iso.datetime().nullable(),
});

/**
 * /api/v1/me/identities: the upstream providers linked to the signed-in user's account. Linking
 * happens in a browser (a sign-in at the provider: the account console or the sign-in pages);
 * here a user sees and removes links, never their last way to sign in.
 */
export function identityOperations(federation: Federation, context: (ctx: Context, caller?: UserCaller) => ChangeContext): AccountOperation[] {
  return [
    {
      method: 'get', path: '/me/identities', auth: 'user', firstPartyOnly: true, summary: 'Identity providers linked to your account',
      response: { status: 200, schema: z.object({ data: z.array(linkedIdentity) }) },
      async handle(_ctx, { caller }) {
        const linked = await federation.accounts.list(caller!.accountId);
        return {
          data: linked.map((l) => ({
            id: l.id,
            provider: { alias: l.providerAlias, displayName: l.providerName, type: l.providerType },
            email: l.email,
            linkedAt: l.linkedAt.toISOString(),
            lastLoginAt: l.lastLoginAt?.toISOString() ?? null,
          })),
        };
      },
    },
    {
      method: 'delete', path: '/me/identities/:id', auth: 'user', firstPartyOnly: true,
      summary: 'Unlink an identity provider; refused (409 IDENT_LAST_SIGN_IN_METHOD) for your last way to sign in',
      response: { status: 204 },
      async handle(ctx, { params, caller }) {
        await federation.accounts.unlink(caller!.accountId, params.id!, context(ctx, caller));
        return undefined;
      },
    },
  ];
}
