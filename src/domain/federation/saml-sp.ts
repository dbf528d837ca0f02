import { randomUUID } from 'node:crypto';
import type * as Samlify from 'samlify';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import { federationEndpoints, type IdentityProvider, type IdentityProviders, type SamlSettings } from './identity-providers.ts';
import { loadSamlify, type Samlify as SamlifyLibrary } from './saml-library.ts';
import { readSamlIdpMetadata } from './saml-metadata.ts';
import { identityFromClaims, UpstreamRejected, type UpstreamIdentity } from './upstream-oauth.ts';

/**
 * Our SAML 2.0 service provider, one per SAML identity provider, with samlify: SP metadata, the
 * AuthnRequest (HTTP-Redirect, signed when the provider says so) and the checks on the response the
 * IdP posts to our ACS.
 *
 * samlify decodes the response, validates it against the SAML schemas (xmllint compiled to
 * JavaScript: no Java), checks the Status, verifies the Response or Assertion signature against the
 * IdP's certificate (absolute XPaths, refusing an assertion hidden in SubjectConfirmationData), the
 * assertion's Issuer, and the Conditions' time window. It does not bind the response to our
 * request, check who it is for, or remember what it has accepted; those checks are ours, below,
 * each on the assertion samlify verified (never on the raw document, where a wrapped copy could
 * stand beside it).
 */

// samlify's constants, as strings: the library itself loads on first use (saml-library.ts).
const binding = { redirect: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', post: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST' };
const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';

/** What our AuthnRequest committed to; the RelayState names the one-time record holding it. */
export interface SamlRequestChecks {
  /** The RelayState (the record's key). */
  state: string;
  /** The AuthnRequest's ID: the response's InResponseTo must be it. */
  requestId: string;
}

type SamlProvider = IdentityProvider & { type: 'saml'; saml: SamlSettings };

/** An HTTP-Redirect message as it arrived: its decoded query, and the signed part of the raw query string. */
export interface RedirectMessage {
  query: Record<string, string>;
  /** `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as sent (URL-encoded): what the Signature covers. */
  octetString: string;
}

/** A LogoutRequest the IdP signed. `refused` says why it cannot be honoured (answered with a Requester status). */
export interface SamlLogoutRequest {
  id: string;
  nameId: string;
  relayState: string;
  refused?: string;
}

export type SamlLogoutStatus = 'success' | 'requester' | 'responder';
const LOGOUT_STATUS: Record<SamlLogoutStatus, string> = {
  success: 'urn:oasis:names:tc:SAML:2.0:status:Success',
  requester: 'urn:oasis:names:tc:SAML:2.0:status:Requester',
  responder: 'urn:oasis:names:tc:SAML:2.0:status:Responder',
};

/**
 * How long after its IssueInstant a LogoutRequest is taken when it carries no NotOnOrAfter: the
 * browser brings it straight from the IdP, and its ID is remembered this long against a replay.
 */
const LOGOUT_REQUEST_LIFETIME_MS = 5 * 60_000;

const asPem = (base64Der: string) => `-----BEGIN CERTIFICATE-----\n${base64Der.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
const asArray = <T>(value: T | T[] | null | undefined): T[] => (value === null || value === undefined ? [] : Array.isArray(value) ? value : [value]);
const timeOf = (value: unknown): number | undefined => {
  if (typeof value !== 'string') return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
};

/** samlify's failures are codes (or strings); never the document. */
const reasonOf = (err: unknown) => (err instanceof Error ? err.message : String(err)).replace(/[A-Za-z0-9+/=]{40,}/g, '…').slice(0, 200);

export function createSamlServiceProvider(deps: {
  issuer: string;
  identityProviders: IdentityProviders;
  ephemeral: EphemeralStore;
  clockSkewSeconds: number;
}) {
  const skewMs = deps.clockSkewSeconds * 1000;

  /**
   * samlify's two entities for one provider: ours (with its key) and the IdP as its metadata
   * describes it, trusting `certificates` (all its signing certificates unless narrowed).
   */
  async function entitiesOf(provider: SamlProvider, certificates?: string[]) {
    const settings = provider.saml;
    const endpoints = federationEndpoints(deps.issuer, provider);
    const key = await deps.identityProviders.samlServiceProviderKey(provider);
    const samlify = await loadSamlify();
    const sp = samlify.ServiceProvider({
      entityID: endpoints.entityId!,
      authnRequestsSigned: settings.signAuthnRequests,
      wantAssertionsSigned: settings.wantAssertionsSigned,
      // An unsigned LogoutRequest over HTTP-Redirect is a link anyone could send a victim to.
      wantLogoutRequestSigned: true,
      signingCert: key.certificatePem,
      privateKey: key.privateKeyPem,
      requestSignatureAlgorithm: RSA_SHA256,
      assertionConsumerService: [{ Binding: binding.post, Location: endpoints.acsUrl! }],
      singleLogoutService: [{ Binding: binding.redirect, Location: endpoints.sloUrl! }],
      // samlify's own Conditions check: NotBefore may be this early, NotOnOrAfter this late.
      clockDrifts: [-skewMs, skewMs],
    });
    // Built from what we read of the metadata rather than the document itself: its signing
    // certificates only, and our signAuthnRequests as the IdP's wish (samlify refuses a mismatch).
    const idpMeta = await readSamlIdpMetadata(settings.metadataXml);
    const idp = samlify.IdentityProvider({
      entityID: idpMeta.entityId,
      signingCert: (certificates ?? idpMeta.signingCertificates).map(asPem),
      singleSignOnService: [{ Binding: binding.redirect, Location: idpMeta.ssoRedirectUrl }],
      ...(idpMeta.sloRedirectUrl ? { singleLogoutService: [{ Binding: binding.redirect, Location: idpMeta.sloRedirectUrl }] } : {}),
      wantAuthnRequestsSigned: settings.signAuthnRequests,
      // Our LogoutResponses are signed: the IdP should not take our word for a logout unsigned.
      wantLogoutResponseSigned: true,
    });
    return { samlify, sp, idp, idpMeta, endpoints: { entityId: endpoints.entityId!, acsUrl: endpoints.acsUrl!, sloUrl: endpoints.sloUrl! } };
  }

  /**
   * The assertion whose signature verified, as XML: samlify's own verification again (it does not
   * hand it out), so every field below is read from signed content. With a signed Response this is
   * its one Assertion; with a signed Assertion, that assertion as signed.
   */
  function verifiedAssertion(samlify: SamlifyLibrary, idp: Samlify.IdentityProviderInstance, samlContent: string): string {
    const [verified, assertion] = samlify.SamlLib.verifySignature(samlContent, { metadata: idp.entityMeta, signatureAlgorithm: RSA_SHA256 });
    if (!verified || !assertion) throw new UpstreamRejected('no signed assertion (encrypted assertions are not supported)');
    return assertion;
  }

  const field = (key: string, localPath: string[], attributes: string[] = [], extra: Record<string, unknown> = {}) => ({ key, localPath, attributes, ...extra });

  return {
    /** Our SP metadata for this provider: entityID, the HTTP-POST ACS, the signing certificate, WantAssertionsSigned. */
    async metadata(provider: SamlProvider): Promise<string> {
      return (await entitiesOf(provider)).sp.getMetadata();
    },

    /** The IdP's sign-on URL carrying our AuthnRequest (HTTP-Redirect) and `relayState`. */
    async loginRequest(provider: SamlProvider, relayState: string): Promise<{ url: URL; requestId: string }> {
      const { sp, idp } = await entitiesOf(provider);
      const { id, context } = sp.createLoginRequest(idp, 'redirect', { relayState }) as { id: string; context: string };
      return { url: new URL(context), requestId: id };
    },

    /**
     * The identity a posted SAMLResponse vouches for, once it is shown to answer `expected` (our
     * request, taken from its one-time record), for us, now, and for the first time. Anything else
     * throws UpstreamRejected with the reason (for the log; never the assertion).
     */
    async identityFrom(provider: SamlProvider, samlResponse: string, expected: SamlRequestChecks): Promise<UpstreamIdentity> {
      const { samlify, sp, idp, endpoints } = await entitiesOf(provider);
      let samlContent: string;
      try {
        ({ samlContent } = await sp.parseLoginResponse(idp, 'post', { body: { SAMLResponse: samlResponse } }));
      } catch (err) {
        throw new UpstreamRejected(`samlify refused the response: ${reasonOf(err)}`);
      }
      const whole = samlify.Extractor.extract(samlContent, [
        field('response', ['Response'], ['Destination', 'InResponseTo']),
        field('issuer', ['Response', 'Issuer']),
        field('assertionSignature', ['Response', 'Assertion', 'Signature'], [], { context: true }),
        field('assertions', ['Response', 'Assertion'], [], { context: true }),
        field('assertionId', ['Response', 'Assertion'], ['ID']),
      ]) as Record<string, unknown>;
      const response = (whole.response ?? {}) as { destination?: string; inResponseTo?: string };

      // The Response's own fields: samlify checks neither. Destination guards against a response
      // meant for another SP's endpoint being replayed to ours; InResponseTo ties it to our request
      // (a response without one is unsolicited, IdP-initiated: refused).
      if (response.destination !== endpoints.acsUrl) throw new UpstreamRejected('Destination is not our ACS');
      if (response.inResponseTo !== expected.requestId) throw new UpstreamRejected('InResponseTo does not name our request (unsolicited or another request)');
      if (whole.issuer !== null && whole.issuer !== undefined && whole.issuer !== idp.entityMeta.getEntityID()) throw new UpstreamRejected('the Response Issuer is not the IdP');
      if (asArray(whole.assertions).length !== 1) throw new UpstreamRejected('not exactly one assertion');
      // samlify accepts a signed Response around an unsigned Assertion; WantAssertionsSigned asks for the assertion's own.
      if (provider.saml.wantAssertionsSigned && !whole.assertionSignature) throw new UpstreamRejected('the assertion is not signed');

      const assertion = verifiedAssertion(samlify, idp, samlContent);
      const fields = samlify.Extractor.extract(assertion, [
        field('id', ['Assertion'], ['ID']),
        field('conditions', ['Assertion', 'Conditions'], ['NotBefore', 'NotOnOrAfter']),
        field('audienceRestrictions', ['Assertion', 'Conditions', 'AudienceRestriction'], [], { context: true }),
        field('confirmations', ['Assertion', 'Subject', 'SubjectConfirmation'], [], { context: true }),
        field('confirmationMethod', ['Assertion', 'Subject', 'SubjectConfirmation'], ['Method']),
        field('confirmationData', ['Assertion', 'Subject', 'SubjectConfirmation', 'SubjectConfirmationData'], ['Recipient', 'InResponseTo', 'NotOnOrAfter', 'NotBefore']),
        field('nameID', ['Assertion', 'Subject', 'NameID']),
        field('attributes', ['Assertion', 'AttributeStatement', 'Attribute'], [], { index: ['Name'], attributePath: ['AttributeValue'] }),
      ].map((f) => ({ ...f, shortcut: assertion }))) as Record<string, unknown>;
      const assertionId = typeof fields.id === 'string' ? fields.id : '';
      if (!assertionId) throw new UpstreamRejected('the assertion has no ID');
      // The signed assertion must be the Response's one Assertion, not a copy kept elsewhere in the
      // document (Extensions, Advice) while another stands in its place: signature wrapping.
      if (whole.assertionId !== assertionId) throw new UpstreamRejected('the signed assertion is not the Response\'s assertion (wrapping)');

      // Audience: samlify never looks. Every AudienceRestriction must name our entity ID, so an
      // assertion the IdP issued for another SP is worthless here.
      const restrictions = asArray(fields.audienceRestrictions as string | string[] | null);
      const audiencesOf = (restriction: string) => asArray(samlify.Extractor.extract(restriction, [field('a', ['AudienceRestriction', 'Audience'])]).a as string | string[] | null);
      if (!restrictions.length || !restrictions.every((r) => audiencesOf(r).includes(endpoints.entityId))) throw new UpstreamRejected('the Audience is not our entity ID');

      // The bearer confirmation: samlify reads none of it. Recipient is our ACS, InResponseTo our
      // request (this one is signed, unlike the Response's when only the assertion is), and its
      // NotOnOrAfter bounds how long the assertion may be presented.
      const confirmations = asArray(fields.confirmations as string | string[] | null);
      const data = asArray(fields.confirmationData as Record<string, string> | Record<string, string>[]);
      if (confirmations.length !== 1 || fields.confirmationMethod !== BEARER || data.length !== 1) throw new UpstreamRejected('not one bearer SubjectConfirmation');
      const confirmation = data[0]!;
      if (confirmation.recipient !== endpoints.acsUrl) throw new UpstreamRejected('the Recipient is not our ACS');
      if (confirmation.inResponseTo !== expected.requestId) throw new UpstreamRejected('the confirmation InResponseTo does not name our request');

      // The time window, with our skew, checked here too (samlify's check is skipped when the
      // Conditions carry no times): NotBefore from either, the earliest NotOnOrAfter of both, which
      // must exist, since the replay record below lives until then.
      const now = Date.now();
      const conditions = (fields.conditions ?? {}) as { notBefore?: string; notOnOrAfter?: string };
      const notBefore = [conditions.notBefore, confirmation.notBefore].map(timeOf).filter((t) => t !== undefined);
      const notOnOrAfter = [conditions.notOnOrAfter, confirmation.notOnOrAfter].map(timeOf).filter((t) => t !== undefined);
      if (!notOnOrAfter.length) throw new UpstreamRejected('the assertion has no NotOnOrAfter');
      if (notBefore.some((t) => now + skewMs < t)) throw new UpstreamRejected('the assertion is not yet valid');
      const expires = Math.min(...notOnOrAfter);
      if (now - skewMs >= expires) throw new UpstreamRejected('the assertion has expired');

      // Replay: samlify keeps no state. An assertion ID is accepted once while it could still be
      // valid, on every instance (the shared ephemeral store).
      const ttlSeconds = Math.max(1, Math.ceil((expires + skewMs - now) / 1000));
      if (!(await deps.ephemeral.setIfAbsent(`saml:assertion:${provider.id}:${assertionId}`, '1', ttlSeconds))) {
        throw new UpstreamRejected('the assertion was presented before (replay)');
      }

      const attributes = (fields.attributes ?? {}) as Record<string, string | string[]>;
      const mapping = provider.saml.attributeMapping;
      // One value for the single fields (the first of a multi-valued attribute); groups keep them all.
      // (fromEntries defines properties: an attribute named __proto__ stays a plain key.)
      const claims: Record<string, unknown> = Object.fromEntries([
        ...Object.entries(attributes).map(([name, value]) => [name, name === mapping.groups ? value : asArray(value)[0]]),
        ['nameID', fields.nameID],
      ]);
      return identityFromClaims(claims, mapping, provider.trustEmail);
    },

    /**
     * An IdP-initiated LogoutRequest (HTTP-Redirect). Throws UpstreamRejected when it is not shown
     * to come from the IdP (unsigned, another key, another Issuer, not a LogoutRequest): nobody to
     * answer. Signed by the IdP but not for us, out of its time or seen before: returned with
     * `refused`, so the IdP hears why. samlify verifies the signature over the query and the
     * schema; it does not check the Issuer, Destination, time or replay of a LogoutRequest.
     */
    async logoutRequestFrom(provider: SamlProvider, message: RedirectMessage): Promise<SamlLogoutRequest> {
      const { samlify, sp, idpMeta, endpoints } = await entitiesOf(provider);
      // One certificate at a time: samlify checks a redirect signature against a single one, and
      // an IdP rolling its key over lists two.
      let samlContent: string | undefined;
      let failure: unknown;
      for (const certificate of idpMeta.signingCertificates) {
        const { idp } = await entitiesOf(provider, [certificate]);
        try {
          ({ samlContent } = await sp.parseLogoutRequest(idp, 'redirect', message));
          break;
        } catch (err) {
          failure = err;
        }
      }
      if (samlContent === undefined) throw new UpstreamRejected(`samlify refused the LogoutRequest: ${reasonOf(failure)}`);

      // The whole document is what the signature covers (HTTP-Redirect signs the query, not an element).
      const fields = samlify.Extractor.extract(samlContent, [
        field('request', ['LogoutRequest'], ['ID', 'IssueInstant', 'Destination', 'NotOnOrAfter']),
        field('issuer', ['LogoutRequest', 'Issuer']),
        field('nameID', ['LogoutRequest', 'NameID']),
      ]) as Record<string, unknown>;
      const request = (fields.request ?? {}) as { id?: string; issueInstant?: string; destination?: string; notOnOrAfter?: string };
      // The SLO profile requires the Issuer; a document signed with the IdP's key naming another is not the IdP speaking.
      if (fields.issuer !== idpMeta.entityId) throw new UpstreamRejected('the LogoutRequest Issuer is not the IdP');
      const id = typeof request.id === 'string' ? request.id : '';
      if (!id) throw new UpstreamRejected('the LogoutRequest has no ID');
      const answer = (refused?: string): SamlLogoutRequest => ({
        id, nameId: typeof fields.nameID === 'string' ? fields.nameID : '', relayState: message.query.RelayState ?? '', ...(refused ? { refused } : {}),
      });

      if (request.destination !== undefined && request.destination !== endpoints.sloUrl) return answer('Destination is not our SLO endpoint');
      if (!fields.nameID || typeof fields.nameID !== 'string') return answer('no NameID (an encrypted NameID is not supported)');
      const now = Date.now();
      const issued = timeOf(request.issueInstant);
      const notOnOrAfter = timeOf(request.notOnOrAfter);
      if (issued === undefined) return answer('no IssueInstant');
      if (now + skewMs < issued) return answer('issued in the future');
      // Without a NotOnOrAfter, a captured request URL would otherwise stay good once its replay record expired.
      const expires = Math.min(notOnOrAfter ?? Infinity, issued + LOGOUT_REQUEST_LIFETIME_MS);
      if (now - skewMs >= expires) return answer('the LogoutRequest has expired');
      const ttlSeconds = Math.max(1, Math.ceil((expires + skewMs - now) / 1000));
      if (!(await deps.ephemeral.setIfAbsent(`saml:logout:${provider.id}:${id}`, '1', ttlSeconds))) return answer('the LogoutRequest was presented before (replay)');
      return answer();
    },

    /**
     * Our signed LogoutResponse to `request`, as the URL of the IdP's SingleLogoutService
     * (HTTP-Redirect); undefined when its metadata names none.
     */
    async logoutResponseUrl(provider: SamlProvider, request: Pick<SamlLogoutRequest, 'id' | 'relayState'>, status: SamlLogoutStatus): Promise<URL | undefined> {
      const { samlify, sp, idp, idpMeta, endpoints } = await entitiesOf(provider);
      if (!idpMeta.sloRedirectUrl) return undefined;
      const id = `_${randomUUID()}`;
      // samlify's default template always says Success: the status is set here.
      const customTagReplacement = (template: string) => ({
        id,
        context: samlify.SamlLib.replaceTagsByValue(template, {
          ID: id, Destination: idpMeta.sloRedirectUrl, Issuer: endpoints.entityId, IssueInstant: new Date().toISOString(),
          InResponseTo: request.id, StatusCode: LOGOUT_STATUS[status],
        }),
      });
      const { context } = sp.createLogoutResponse(idp, { extract: { request: { id: request.id } } }, 'redirect', { relayState: request.relayState, customTagReplacement }) as { context: string };
      return new URL(context);
    },
  };
}

export type SamlServiceProvider = ReturnType<typeof createSamlServiceProvider>;
