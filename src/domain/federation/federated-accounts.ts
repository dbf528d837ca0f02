import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { FederatedIdentitiesRepo, FederatedIdentityRow, LinkedProviderRow } from '../../repos/federated-identities.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';
import { byOperator, byUser, type Accounts, type ChangeContext } from '../authn/accounts.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import { identityProviderActor, type EventRecorder } from '../events/events.ts';
import type { IdentityProvider } from './identity-providers.ts';
import type { UpstreamIdentity } from './upstream-oauth.ts';

/**
 * Which local account an upstream identity signs in to. A link (provider, upstream subject) decides
 * when there is one. Without one: a verified upstream email of a new address creates the account
 * (just-in-time, unless the provider says not to); an address that already has an account is linked
 * only after its owner proves control of it (the sign-in's link step), never on the email match
 * alone, and never from an unverified upstream email (which could be anyone's).
 */

/** Why an upstream identity cannot sign in here. */
export type FederationRefusal =
  | 'unverified-email'   // no email, or one the upstream does not vouch for: IDENT_EXT_IDENTITY_MISMATCH
  | 'domain-not-allowed' // outside the provider's allowedDomains: IDENT_ALLOWLIST_VIOLATION
  | 'linking-off'        // an account has this email and the provider never links
  | 'no-account'         // no account, and just-in-time provisioning is off
  | 'inactive';          // the account is suspended or deactivated

export type FederationOutcome =
  | { kind: 'signed-in'; user: UserRow }
  | { kind: 'created'; user: UserRow }
  | { kind: 'link-required'; user: UserRow }
  | { kind: 'refused'; why: FederationRefusal };

export interface LinkedIdentity {
  id: string;
  providerAlias: string;
  providerName: string;
  providerType: string;
  email: string | null;
  linkedAt: Date;
  lastLoginAt: Date | null;
}

const domainOf = (email: string) => email.slice(email.lastIndexOf('@') + 1).toLowerCase();

export function createFederatedAccounts(deps: {
  links: FederatedIdentitiesRepo;
  users: UsersRepo;
  accounts: Pick<Accounts, 'create'>;
  events: EventRecorder;
  payloads: Pick<OidcPayloadsRepo, 'revokeByAccountId'>;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { links, users, events } = deps;

  const linkedPayload = (user: UserRow, provider: IdentityProvider, identity: UpstreamIdentity) =>
    ({ user: { id: user.id }, provider: { alias: provider.alias, type: provider.type }, subject: identity.subject });

  async function insertLink(user: UserRow, provider: IdentityProvider, identity: UpstreamIdentity, context: ChangeContext, trx: Knex.Transaction): Promise<FederatedIdentityRow> {
    // A provider serves its own tenant's accounts only.
    if (user.tenant_id !== provider.tenantId) throw new AppError('IDENT_EXT_IDENTITY_MISMATCH', "the identity provider belongs to another tenant than the account");
    const row = await links.insert({ id: randomUUID(), tenant_id: user.tenant_id, user_id: user.id, provider_id: provider.id, subject: identity.subject, email: identity.email }, trx);
    await events.record({ type: 'user.identity_linked', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id), payload: linkedPayload(user, provider, identity) }, trx);
    return row;
  }

  return {
    async resolve(provider: IdentityProvider, identity: UpstreamIdentity, context: ChangeContext = {}): Promise<FederationOutcome> {
      const link = await links.findBySubject(provider.id, identity.subject);
      if (link) {
        const user = await users.findById(link.user_id);
        if (!user || user.status !== 'active') return { kind: 'refused', why: 'inactive' };
        await links.touch(link.id, identity.email);
        return { kind: 'signed-in', user };
      }
      if (!identity.email || !identity.emailVerified) return { kind: 'refused', why: 'unverified-email' };
      if (provider.allowedDomains.length && !provider.allowedDomains.includes(domainOf(identity.email))) return { kind: 'refused', why: 'domain-not-allowed' };
      // The provider's tenant: its upstream accounts are that tenant's users.
      const existing = await users.findByEmail(provider.tenantId, identity.email);
      if (existing) {
        if (provider.accountLinking === 'off') return { kind: 'refused', why: 'linking-off' };
        if (existing.status !== 'active') return { kind: 'refused', why: 'inactive' };
        return { kind: 'link-required', user: existing };
      }
      if (!provider.jitProvisioning) return { kind: 'refused', why: 'no-account' };
      // An account provisioned on the upstream's word: the provider is the actor of its creation and link.
      const provisioned = { ...context, actor: context.actor ?? identityProviderActor(provider.alias) };
      try {
        const user = await deps.accounts.create({
          email: identity.email,
          tenantId: provider.tenantId,
          emailVerified: true,
          ...(identity.givenName ? { givenName: identity.givenName.slice(0, 200) } : {}),
          ...(identity.familyName ? { familyName: identity.familyName.slice(0, 200) } : {}),
        }, provisioned, async (created, trx) => {
          await insertLink(created, provider, identity, provisioned, trx);
        });
        return { kind: 'created', user };
      } catch (err) {
        // Another sign-in created the account or the link meanwhile: go through the same checks again.
        if (err instanceof AppError && err.code === 'IDENT_EMAIL_DUPLICATE') return this.resolve(provider, identity, context);
        if (isUniqueViolation(err)) return this.resolve(provider, identity, context);
        throw err;
      }
    },

    /**
     * The active local account an upstream subject is linked to, for a token exchange; undefined
     * when there is no link or the account is not active. Never creates or links an account: that
     * needs the sign-in's checks (a verified email, proof of control of an existing account), which
     * a back-channel exchange with nobody present cannot make.
     */
    async linkedUser(provider: IdentityProvider, subject: string): Promise<UserRow | undefined> {
      const link = await links.findBySubject(provider.id, subject);
      if (!link) return undefined;
      const user = await users.findById(link.user_id);
      if (!user || user.status !== 'active') return undefined;
      await links.touch(link.id);
      return user;
    },

    /**
     * Links `identity` to `user` once its owner proved control of the account in this sign-in. An
     * upstream subject already linked elsewhere, or a second link of the user to the same provider,
     * is refused (IDENT_EXT_IDENTITY_MISMATCH).
     */
    async link(user: UserRow, provider: IdentityProvider, identity: UpstreamIdentity, context: ChangeContext = {}): Promise<void> {
      try {
        await deps.transaction((trx) => insertLink(user, provider, identity, context, trx));
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_EXT_IDENTITY_MISMATCH', 'this upstream account or provider is linked already');
        throw err;
      }
    },

    /** Links `identity` to the signed-in user `userId` (a link from the account console). */
    async linkTo(userId: string, provider: IdentityProvider, identity: UpstreamIdentity, context: ChangeContext = {}): Promise<void> {
      const user = await users.findById(userId);
      if (!user || user.status !== 'active') throw new AppError('IDENT_UNAUTHENTICATED', 'the account is not active');
      await this.link(user, provider, identity, context);
    },

    /**
     * The provider signed its user out (SAML single logout): every session of the linked local
     * account ends, with its grants and tokens. We keep no record of which session came from which
     * upstream session, so all of them end. Answers the user's id, or undefined when no account is
     * linked to `subject` (nothing to end).
     */
    async signOut(provider: IdentityProvider, subject: string, reason: 'saml_slo', context: ChangeContext = {}): Promise<string | undefined> {
      const link = await links.findBySubject(provider.id, subject);
      if (!link) return undefined;
      await deps.payloads.revokeByAccountId(link.user_id);
      await events.record({
        type: 'user.signed_out', subjectId: link.user_id, tenantId: link.tenant_id, ...byOperator(context),
        payload: { user: { id: link.user_id }, provider: { alias: provider.alias, type: provider.type }, reason },
      });
      return link.user_id;
    },

    async list(userId: string): Promise<LinkedIdentity[]> {
      return (await links.listForUser(userId)).map(view);
    },

    /**
     * Unlinks one of the user's providers, unless it is their last way in: without a password and
     * without another link, the account could not be signed in to any more (only recovered by mail).
     */
    async unlink(userId: string, linkId: string, context: ChangeContext = {}): Promise<void> {
      const user = await users.findById(userId);
      // A token outliving its user's suspension must not reach the account.
      if (!user || user.status !== 'active') throw new AppError('IDENT_UNAUTHENTICATED', 'the account is not active');
      const linked = await links.listForUser(user.id);
      const target = linked.find((l) => l.id === linkId);
      if (!target) throw new AppError('IDENT_NOT_FOUND', 'no linked identity of yours with this id');
      if (!user.password_hash && linked.length === 1) throw new AppError('IDENT_LAST_SIGN_IN_METHOD');
      await deps.transaction(async (trx) => {
        if (!(await links.deleteForUser(user.id, linkId, trx))) throw new AppError('IDENT_NOT_FOUND', 'no linked identity of yours with this id');
        await events.record({
          type: 'user.identity_unlinked', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id),
          payload: { user: { id: user.id }, provider: { alias: target.alias, type: target.type }, subject: target.subject },
        }, trx);
      });
    },
  };
}

function view(row: LinkedProviderRow): LinkedIdentity {
  return {
    id: row.id, providerAlias: row.alias, providerName: row.display_name, providerType: row.type,
    email: row.email, linkedAt: row.linked_at, lastLoginAt: row.last_login_at,
  };
}

export type FederatedAccounts = ReturnType<typeof createFederatedAccounts>;
