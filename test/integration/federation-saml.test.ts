import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { inflateRawSync } from 'node:zlib';
import * as oidc from 'openid-client';
import * as samlify from 'samlify';
import { AdminApi, adminToken, startAdminServer } from '../helpers/admin.ts';
import { formAction, formField, HttpBrowser } from '../helpers/browser-http.ts';
import { alertText } from '../helpers/login-page.ts';
import { authorizationRequest, REDIRECT_URI, registerClient, rpConfig, uniqueEmail } from '../helpers/rp.ts';
import {
  authnRequestOf, loginResponseXml, samlIdpMetadata, selfSignedIdentity, signWithSamlify, signWithXmlCrypto,
  type LoginResponseFields, type SigningIdentity,
} from '../helpers/saml-idp.ts';
import { stopAndDestroy, type TestServer } from '../helpers/server.ts';

const isCallback = (u: URL) => u.href.startsWith(REDIRECT_URI);
const IDP_ENTITY = 'https://idp.test/metadata';
const IDP_SSO = 'https://idp.test/sso';

describe('federation: signing in through a SAML 2.0 identity provider', () => {
  let ts: TestServer;
  let api: AdminApi;
  let rp: oidc.Configuration;
  let idpKey: SigningIdentity;
  let otherKey: SigningIdentity;
  const alias = 'corp-saml';
  const displayName = 'Corp SAML';
  let providerId: string;
  let base: string;
  let spMetadata: string;

  before(async () => {
    ts = await startAdminServer();
    api = new AdminApi(ts, await adminToken(ts));
    idpKey = await selfSignedIdentity('corp-idp');
    otherKey = await selfSignedIdentity('not-the-idp');
    const created = await api.post('/identity-providers', {
      alias, type: 'saml', displayName, trustEmail: true, signAuthnRequests: true,
      metadataXml: samlIdpMetadata({ entityId: IDP_ENTITY, ssoUrl: IDP_SSO, identity: idpKey }),
    });
    assert.equal(created.status, 201, created.text);
    providerId = created.body.id;
    base = `${ts.issuer}/api/v1/auth/saml/${alias}`;
    rp = await rpConfig(ts, await registerClient(ts, { token_endpoint_auth_method: 'none' }, true));
    spMetadata = await (await fetch(`${base}/metadata`)).text();
  });

  after(async () => {
    await stopAndDestroy(ts);
  });

  /** RP authorization request -> login page -> "Continue with Corp SAML" -> 303 to the IdP with our AuthnRequest. */
  async function startSaml() {
    const browser = new HttpBrowser();
    const request = await authorizationRequest(rp, { scope: 'openid email profile' });
    const page = await browser.follow(request.url, {}, isCallback);
    const html = await page.res.text();
    assert.match(html, new RegExp(`Continue with ${displayName}`), 'the login page offers the SAML provider');
    const res = await browser.postForm(new URL(formAction(html, `/federate/${alias}`)!, page.url), { csrf: formField(html, 'csrf')! });
    assert.equal(res.status, 303, await res.text());
    const location = new URL(res.headers.get('location')!);
    assert.equal(`${location.origin}${location.pathname}`, IDP_SSO, 'sent to the IdP sign-on service');
    const relayState = location.searchParams.get('RelayState')!;
    assert.ok(relayState, 'a RelayState');
    return { browser, request, location, relayState, authn: authnRequestOf(location), loginUrl: page.url };
  }

  /** A response the IdP would send for `requestId`, for `email`, with any field overridden. */
  function fields(requestId: string | undefined, email: string, overrides: Partial<LoginResponseFields> = {}): LoginResponseFields {
    const now = Date.now();
    return {
      id: `_r${randomUUID()}`,
      destination: `${base}/acs`,
      ...(requestId ? { inResponseTo: requestId } : {}),
      issuer: IDP_ENTITY,
      assertionId: `_a${randomUUID()}`,
      nameId: `subject-${email}`,
      recipient: `${base}/acs`,
      audience: `${base}/metadata`,
      notBefore: new Date(now - 5_000),
      notOnOrAfter: new Date(now + 5 * 60_000),
      attributes: { email, givenName: 'Grace', surname: 'Hopper', groups: ['admins', 'navy'] },
      ...overrides,
    };
  }

  /** The IdP's page posting the form to our ACS: a cross-site POST, no cookies. */
  async function postToAcs(samlResponse: string, relayState: string | undefined) {
    const body = new URLSearchParams({ SAMLResponse: samlResponse, ...(relayState !== undefined ? { RelayState: relayState } : {}) });
    return fetch(`${base}/acs`, { method: 'POST', body, redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
  }

  const base64 = (xml: string) => Buffer.from(xml).toString('base64');
  const userByEmail = (email: string) => ts.server.services.db('users').whereRaw('lower(email) = ?', [email]).first();

  /** Posts `samlResponse` for the started sign-in and follows the browser to where it ends. */
  async function complete(started: Awaited<ReturnType<typeof startSaml>>, samlResponse: string) {
    const acs = await postToAcs(samlResponse, started.relayState);
    assert.equal(acs.status, 303, await acs.text());
    // Handed over to a GET the starting browser makes with its cookies (the POST carried none).
    const next = new URL(acs.headers.get('location')!, ts.issuer);
    assert.equal(next.pathname, `${new URL(base).pathname}/continue`);
    return started.browser.follow(next, {}, isCallback);
  }

  /** A bad response is refused: back on the login page with the error, nobody signed in, no account. */
  async function assertRefused(started: Awaited<ReturnType<typeof startSaml>>, samlResponse: string, email: string) {
    const step = await complete(started, samlResponse);
    assert.ok(!isCallback(step.url), 'not signed in');
    assert.equal(step.res.status, 400);
    assert.match(alertText(await step.res.text()) ?? '', /did not confirm who you are/);
    assert.equal(await userByEmail(email), undefined, 'no account made');
  }

  it('publishes SP metadata: entity ID, the HTTP-POST ACS, our signing certificate, WantAssertionsSigned, signed AuthnRequests', async () => {
    const res = await fetch(`${base}/metadata`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/samlmetadata\+xml/);
    const meta = samlify.ServiceProvider({ metadata: spMetadata }).entityMeta;
    assert.equal(meta.getEntityID(), `${base}/metadata`);
    assert.equal(meta.getAssertionConsumerService('post'), `${base}/acs`);
    assert.equal(meta.isWantAssertionsSigned(), true);
    assert.equal(meta.isAuthnRequestSigned(), true);
    assert.equal(meta.getSingleLogoutService('redirect'), `${base}/slo`, 'single logout by HTTP-Redirect');
    const row = await ts.server.services.db('identity_providers').where({ id: providerId }).first();
    const certificate = String(meta.getX509Certificate('signing'));
    assert.ok(certificate.length > 100 && row.sp_certificate.replace(/-----[^-]+-----|\s/g, '') === certificate.replace(/\s/g, ''), 'our certificate');
    assert.ok(!spMetadata.includes('PRIVATE KEY') && !row.sp_private_key_sealed.includes('PRIVATE KEY'), 'the key is sealed, never published');
    assert.equal((await fetch(`${ts.issuer}/api/v1/auth/saml/no-such/metadata`)).status, 404);
  });

  it('signs its AuthnRequest (HTTP-Redirect) with the key of its metadata; the request names our ACS', async () => {
    const started = await startSaml();
    const idp = samlify.IdentityProvider({
      entityID: IDP_ENTITY, privateKey: idpKey.privateKeyPem, signingCert: idpKey.certificatePem, wantAuthnRequestsSigned: true,
      singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: IDP_SSO }],
    });
    const query = Object.fromEntries(started.location.searchParams);
    const octetString = started.location.search.slice(1).replace(/&Signature=[^&]*/, '');
    const parsed = await idp.parseLoginRequest(samlify.ServiceProvider({ metadata: spMetadata }), 'redirect', { query, octetString });
    const request = parsed.extract.request as Record<string, string>;
    assert.equal(request.id, started.authn.id);
    assert.equal(request.assertionConsumerServiceUrl ?? request.assertionConsumerServiceURL, `${base}/acs`);
    assert.equal(parsed.extract.issuer, `${base}/metadata`);
  });

  it('happy path with a samlify IdP: the ACS records the result and sends the browser to finish; a JIT account with the mapped attributes', async () => {
    const email = uniqueEmail('saml').toLowerCase();
    const started = await startSaml();
    const xml = loginResponseXml(fields(started.authn.id, email));
    const samlResponse = await signWithSamlify(xml, { entityId: IDP_ENTITY, key: idpKey, spMetadata, requestId: started.authn.id });
    const step = await complete(started, samlResponse);
    assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
    const claims = (await started.request.redeem(step.url)).claims()!;
    assert.deepEqual(claims.amr, ['fed']);
    const user = await ts.server.services.db('users').where({ id: claims.sub }).first();
    assert.equal(user.email, email);
    assert.equal(user.email_verified, true, 'trustEmail');
    assert.equal(user.given_name, 'Grace');
    assert.equal(user.family_name, 'Hopper');
    const links = await ts.server.services.db('federated_identities').where({ user_id: claims.sub });
    assert.deepEqual(links.map((l: { subject: string; provider_id: string }) => [l.subject, l.provider_id]), [[`subject-${email}`, providerId]]);

    // The same NameID next time (signed by xml-crypto, Response and Assertion) is the same account.
    const again = await startSaml();
    const signed = signWithXmlCrypto(loginResponseXml(fields(again.authn.id, email)), idpKey, ['assertion', 'response']);
    const next = await complete(again, base64(signed));
    assert.ok(isCallback(next.url));
    assert.equal((await again.request.redeem(next.url)).claims()!.sub, claims.sub);
  });

  it('a response posted from a browser that did not start the sign-in (a forwarded AuthnRequest) reaches no interaction', async () => {
    const email = uniqueEmail('forwarded').toLowerCase();
    const started = await startSaml();
    const samlResponse = await signWithSamlify(loginResponseXml(fields(started.authn.id, email)), { entityId: IDP_ENTITY, key: idpKey, spMetadata, requestId: started.authn.id });
    const acs = await postToAcs(samlResponse, started.relayState);
    assert.equal(acs.status, 303);
    // The victim's browser, not the starter's, comes back from the IdP.
    const victim = new HttpBrowser();
    const landed = await victim.request(new URL(acs.headers.get('location')!, ts.issuer));
    assert.equal(landed.status, 400);
    // The starter then tries to finish its own interaction: nothing was recorded for it.
    const finish = await started.browser.follow(new URL(`${started.loginUrl.pathname.replace(/\/$/, '')}/federated`, ts.issuer), {}, isCallback);
    assert.ok(!isCallback(finish.url), 'the starter is not signed in as the victim');
    assert.equal(finish.res.status, 400);
    assert.equal(await userByEmail(email), undefined, 'no account made for the victim');
  });

  it('a response signed by xml-crypto (the Assertion only, no KeyInfo) is accepted', async () => {
    const email = uniqueEmail('xmlcrypto').toLowerCase();
    const started = await startSaml();
    const step = await complete(started, base64(signWithXmlCrypto(loginResponseXml(fields(started.authn.id, email)), idpKey, ['assertion'])));
    assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
    assert.equal((await userByEmail(email)).email, email);
  });

  it('a clock a little ahead at the IdP is tolerated (SAML_CLOCK_SKEW_SECONDS, 60 by default)', async () => {
    const email = uniqueEmail('skew').toLowerCase();
    const started = await startSaml();
    const step = await complete(started, base64(signWithXmlCrypto(loginResponseXml(fields(started.authn.id, email, { notBefore: new Date(Date.now() + 20_000) })), idpKey, ['assertion'])));
    assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
  });

  describe('bad responses are refused', () => {
    const cases: [string, (requestId: string, email: string) => string | Promise<string>][] = [
      ['unsigned', (id, email) => base64(loginResponseXml(fields(id, email)))],
      ['signed with another key', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email)), otherKey, ['assertion']))],
      ['signed with another key that names its certificate', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email)), otherKey, ['assertion'], { keyInfo: true }))],
      ['only the Response signed while assertions must be', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email)), idpKey, ['response']))],
      ['for another audience', (id, email) => signWithSamlify(loginResponseXml(fields(id, email, { audience: 'https://other-sp.test/metadata' })), { entityId: IDP_ENTITY, key: idpKey, spMetadata })],
      ['for another recipient', (id, email) => signWithSamlify(loginResponseXml(fields(id, email, { recipient: 'https://other-sp.test/acs' })), { entityId: IDP_ENTITY, key: idpKey, spMetadata })],
      ['for another destination', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email, { destination: 'https://other-sp.test/acs' })), idpKey, ['assertion', 'response']))],
      ['expired', (id, email) => signWithSamlify(loginResponseXml(fields(id, email, { notBefore: new Date(Date.now() - 600_000), notOnOrAfter: new Date(Date.now() - 120_000) })), { entityId: IDP_ENTITY, key: idpKey, spMetadata })],
      ['its bearer confirmation expired (the Conditions still valid)', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email, { confirmationNotOnOrAfter: new Date(Date.now() - 120_000) })), idpKey, ['assertion']))],
      ['not yet valid', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email, { notBefore: new Date(Date.now() + 120_000) })), idpKey, ['assertion']))],
      ['answering another request', (_id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(`_${randomUUID()}`, email)), idpKey, ['assertion']))],
      ['its Response answering another request (the signed confirmation ours)', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(`_${randomUUID()}`, email, { confirmationInResponseTo: id })), idpKey, ['assertion']))],
      ['its signed confirmation answering another request (the Response ours)', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email, { confirmationInResponseTo: `_${randomUUID()}` })), idpKey, ['assertion']))],
      ['unsolicited, though it carries our RelayState', (_id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(undefined, email)), idpKey, ['assertion']))],
      ['from another issuer', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email, { issuer: 'https://evil.test/metadata' })), idpKey, ['assertion']))],
      ['failing the SAML schema', (id, email) => base64(signWithXmlCrypto(loginResponseXml(fields(id, email)).replace('<saml:Subject>', '<saml:Unexpected/><saml:Subject>'), idpKey, ['assertion']))],
      ['with a wrapped signature (the signed assertion hidden in SubjectConfirmationData)', (id, email) => {
        const genuine = signWithXmlCrypto(loginResponseXml(fields(id, 'victim@example.test')), idpKey, ['assertion']);
        const signedAssertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(genuine)![0];
        const forged = loginResponseXml(fields(id, email));
        return base64(forged.replace(/(<saml:SubjectConfirmationData [^>]*?)\/>/, `$1>${signedAssertion}</saml:SubjectConfirmationData>`));
      }],
      ['with a wrapped signature (a forged assertion carrying the genuine signature, the signed one moved to Extensions)', (id, email) => {
        const genuine = signWithXmlCrypto(loginResponseXml(fields(id, email)), idpKey, ['assertion']);
        const signedAssertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(genuine)![0];
        const signature = /<ds:Signature[\s\S]*<\/ds:Signature>/.exec(signedAssertion)![0];
        const forged = signedAssertion.replace(signature, '').replace(/ID="[^"]+"/, `ID="_forged${randomUUID()}"`).replace(/<saml:Issuer>[^<]*<\/saml:Issuer>/, `$&${signature}`);
        return base64(genuine.replace(signedAssertion, forged).replace('<samlp:Status>', `<samlp:Extensions>${signedAssertion}</samlp:Extensions><samlp:Status>`));
      }],
      ['with a wrapped signature (a forged assertion carrying the genuine signature, the signed one, unsigned, moved to Extensions)', (id, email) => {
        const genuine = signWithXmlCrypto(loginResponseXml(fields(id, 'victim@example.test')), idpKey, ['assertion']);
        const signedAssertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(genuine)![0];
        const signature = /<ds:Signature[\s\S]*<\/ds:Signature>/.exec(signedAssertion)![0];
        // The enveloped signature's digest leaves the signature out: the genuine assertion still matches it.
        const hidden = signedAssertion.replace(signature, '');
        const forged = loginResponseXml(fields(id, email));
        const forgedAssertion = /<saml:Assertion[\s\S]*<\/saml:Assertion>/.exec(forged)![0].replace(/(<saml:Assertion [^>]*>)(<saml:Issuer>[^<]*<\/saml:Issuer>)/, `$1$2${signature}`);
        return base64(forged.replace(/<saml:Assertion[\s\S]*<\/saml:Assertion>/, forgedAssertion).replace('<samlp:Status>', `<samlp:Extensions>${hidden}</samlp:Extensions><samlp:Status>`));
      }],
    ];
    for (const [name, make] of cases) {
      it(name, async () => {
        const email = uniqueEmail('bad').toLowerCase();
        const started = await startSaml();
        await assertRefused(started, await make(started.authn.id, email), email);
      });
    }
  });

  it('a replayed response is refused, even with a fresh RelayState', async () => {
    const email = uniqueEmail('replay').toLowerCase();
    const started = await startSaml();
    const samlResponse = base64(signWithXmlCrypto(loginResponseXml(fields(started.authn.id, email)), idpKey, ['assertion']));
    assert.ok(isCallback((await complete(started, samlResponse)).url));
    // The same RelayState again: its record was taken.
    const reused = await postToAcs(samlResponse, started.relayState);
    assert.equal(reused.status, 400);
    assert.match(await reused.text(), /expired or was already used/);
    // A new sign-in whose request the attacker cannot change: the same assertion ID is refused too,
    // even when the rest is re-signed to match the new request.
    const second = await startSaml();
    const replay = base64(signWithXmlCrypto(loginResponseXml({ ...fields(second.authn.id, email), assertionId: /<saml:Assertion [^>]*ID="([^"]+)"/.exec(Buffer.from(samlResponse, 'base64').toString())![1]! }), idpKey, ['assertion']));
    const step = await complete(second, replay);
    assert.ok(!isCallback(step.url));
    assert.equal(step.res.status, 400);
  });

  it('an unsolicited (IdP-initiated) response without a RelayState gets the expired page, no account', async () => {
    const email = uniqueEmail('unsolicited').toLowerCase();
    const res = await postToAcs(base64(signWithXmlCrypto(loginResponseXml(fields(undefined, email)), idpKey, ['assertion'])), undefined);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /expired or was already used/);
    assert.equal(await userByEmail(email), undefined);
    const garbage = await postToAcs('not base64 <xml>', 'unknown-relay-state');
    assert.equal(garbage.status, 400, 'never a 500');
  });
  describe('IdP-initiated single logout at /slo (HTTP-Redirect)', () => {
    const IDP_SLO = 'https://idp.test/slo';
    const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
    const REQUESTER = 'urn:oasis:names:tc:SAML:2.0:status:Requester';
    const REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';

    /** The IdP as samlify plays it, signing with `key`, under `entityId`. */
    const idpEntity = (key: SigningIdentity, entityId = IDP_ENTITY) => samlify.IdentityProvider({
      entityID: entityId, privateKey: key.privateKeyPem, signingCert: idpKey.certificatePem, wantLogoutResponseSigned: true,
      requestSignatureAlgorithm: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
      singleSignOnService: [{ Binding: REDIRECT, Location: IDP_SSO }],
      singleLogoutService: [{ Binding: REDIRECT, Location: IDP_SLO }],
    });
    /** Our SP as the IdP knows it from our metadata; `signed` false: the IdP sends its request unsigned. */
    const spEntity = (signed = true) => samlify.ServiceProvider({ metadata: spMetadata, wantLogoutRequestSigned: signed });

    /** The IdP's LogoutRequest URL for `nameId`, with any attribute of the request changed. */
    function logoutRequestUrl(nameId: string, opts: { key?: SigningIdentity; signed?: boolean; entityId?: string; attributes?: Record<string, string> } = {}): URL {
      const idp = idpEntity(opts.key ?? idpKey, opts.entityId);
      const replace = opts.attributes && ((template: string) => {
        const id = `_${randomUUID()}`;
        let context = samlify.SamlLib.replaceTagsByValue(template, {
          ID: id, Destination: `${base}/slo`, Issuer: opts.entityId ?? IDP_ENTITY, IssueInstant: new Date().toISOString(),
          NameIDFormat: 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent', NameID: nameId, SessionIndex: '_s1',
        });
        for (const [name, value] of Object.entries(opts.attributes!)) {
          context = context.includes(` ${name}="`) ? context.replace(new RegExp(` ${name}="[^"]*"`), ` ${name}="${value}"`) : context.replace('<samlp:LogoutRequest ', `<samlp:LogoutRequest ${name}="${value}" `);
        }
        return { id, context };
      });
      const { context } = idp.createLogoutRequest(spEntity(opts.signed ?? true), 'redirect', { logoutNameID: nameId, sessionIndex: '_s1' }, { relayState: 'idp-relay', ...(replace ? { customTagReplacement: replace } : {}) }) as { context: string };
      const url = new URL(context);
      assert.equal(`${url.origin}${url.pathname}`, `${base}/slo`, 'the IdP sends it to our metadata\'s SLO endpoint');
      return url;
    }

    /** A user signed in through the IdP: their NameID, id, access token and the RP's refresh of it. */
    async function signedInUser(email = uniqueEmail('slo').toLowerCase()) {
      const started = await startSaml();
      const step = await complete(started, base64(signWithXmlCrypto(loginResponseXml(fields(started.authn.id, email)), idpKey, ['assertion'])));
      assert.ok(isCallback(step.url), `expected the RP's callback, got ${step.url.href}`);
      const tokens = await started.request.redeem(step.url);
      const userId = tokens.claims()!.sub;
      assert.ok(await userinfoWorks(tokens.access_token), 'signed in');
      assert.ok((await ts.server.services.repos.payloads.listSessions(userId)).length > 0, 'a session');
      return { email, nameId: `subject-${email}`, userId, accessToken: tokens.access_token };
    }

    const userinfoWorks = (accessToken: string) => oidc.fetchUserInfo(rp, accessToken, oidc.skipSubjectCheck).then(() => true, () => false);
    const signedOutEvents = (userId: string) => ts.server.services.db('events').where({ subject_id: userId, type: 'user.signed_out' });

    /** The LogoutResponse our answer carries to the IdP (inflated), checked as the IdP checks it. */
    async function logoutResponseOf(res: Response) {
      assert.equal(res.status, 302, await res.clone().text());
      const location = new URL(res.headers.get('location')!);
      assert.equal(`${location.origin}${location.pathname}`, IDP_SLO, 'back to the IdP\'s SingleLogoutService');
      assert.equal(location.searchParams.get('RelayState'), 'idp-relay', 'its RelayState echoed');
      const xml = inflateRawSync(Buffer.from(location.searchParams.get('SAMLResponse')!, 'base64')).toString('utf8');
      return { location, xml, status: /<samlp:StatusCode Value="([^"]+)"/.exec(xml)![1] };
    }

    /** Refused without an answer: a 400 page, and the user still signed in with no event. */
    async function assertIgnored(url: URL, user: Awaited<ReturnType<typeof signedInUser>>) {
      const res = await fetch(url, { redirect: 'manual' });
      assert.equal(res.status, 400);
      assert.match(await res.text(), /could not be accepted/);
      assert.ok(await userinfoWorks(user.accessToken), 'still signed in');
      assert.ok((await ts.server.services.repos.payloads.listSessions(user.userId)).length > 0, 'the session lives');
      assert.equal((await signedOutEvents(user.userId)).length, 0);
    }

    it('a signed LogoutRequest ends the user\'s sessions and tokens, records user.signed_out, and answers Success to the IdP (signed)', async () => {
      const user = await signedInUser();
      const bystander = await signedInUser();
      const url = logoutRequestUrl(user.nameId);
      const requestId = /\sID="([^"]+)"/.exec(inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest')!, 'base64')).toString('utf8'))![1]!;
      const { location, xml, status } = await logoutResponseOf(await fetch(url, { redirect: 'manual' }));
      assert.equal(status, SUCCESS);
      assert.match(xml, new RegExp(`InResponseTo="${requestId}"`));
      // The IdP verifies our signature with the certificate of our metadata.
      const octetString = location.search.slice(1).replace(/&Signature=[^&]*/, '');
      const parsed = await idpEntity(idpKey).parseLogoutResponse(spEntity(), 'redirect', { query: Object.fromEntries(location.searchParams), octetString });
      assert.equal((parsed.extract as { issuer: string }).issuer, `${base}/metadata`);

      assert.equal(await userinfoWorks(user.accessToken), false, 'the access token is dead');
      assert.deepEqual(await ts.server.services.repos.payloads.listSessions(user.userId), [], 'no session left');
      const [event, ...more] = await signedOutEvents(user.userId);
      assert.equal(more.length, 0);
      const payload = typeof event.payload === 'string' ? JSON.parse(event.payload) : event.payload;
      assert.deepEqual(payload, { user: { id: user.userId }, provider: { alias, type: 'saml' }, reason: 'saml_slo' });
      assert.ok(await userinfoWorks(bystander.accessToken), 'another user keeps their session');
    });

    it('a NameID linked to nobody: Success, nothing ended', async () => {
      const bystander = await signedInUser();
      const { status } = await logoutResponseOf(await fetch(logoutRequestUrl('subject-nobody@example.test'), { redirect: 'manual' }));
      assert.equal(status, SUCCESS);
      assert.ok(await userinfoWorks(bystander.accessToken));
    });

    it('unsigned, signed with another key, from another issuer, or to an unknown provider: a 400 page, nothing ended', async () => {
      const user = await signedInUser();
      await assertIgnored(logoutRequestUrl(user.nameId, { signed: false }), user);
      await assertIgnored(logoutRequestUrl(user.nameId, { key: otherKey }), user);
      await assertIgnored(logoutRequestUrl(user.nameId, { entityId: 'https://evil.test/metadata' }), user);
      const tampered = logoutRequestUrl(user.nameId);
      tampered.searchParams.set('RelayState', 'changed');
      await assertIgnored(tampered, user);
      const elsewhere = logoutRequestUrl(user.nameId);
      await assertIgnored(new URL(`${ts.issuer}/api/v1/auth/saml/no-such/slo${elsewhere.search}`), user);
      await assertIgnored(new URL(`${base}/slo?SAMLRequest=not-deflated`), user);
      await assertIgnored(new URL(`${base}/slo`), user);
    });

    it('signed by the IdP but replayed, for another destination or expired: a Requester status, nothing more ended', async () => {
      const user = await signedInUser();
      const expectRequester = async (url: URL) => {
        assert.equal((await logoutResponseOf(await fetch(url, { redirect: 'manual' }))).status, REQUESTER);
        assert.ok(await userinfoWorks(user.accessToken), 'still signed in');
        assert.equal((await signedOutEvents(user.userId)).length, 0);
      };
      await expectRequester(logoutRequestUrl(user.nameId, { attributes: { Destination: 'https://other-sp.test/slo' } }));
      await expectRequester(logoutRequestUrl(user.nameId, { attributes: { NotOnOrAfter: new Date(Date.now() - 120_000).toISOString() } }));
      await expectRequester(logoutRequestUrl(user.nameId, { attributes: { IssueInstant: new Date(Date.now() - 3_600_000).toISOString() } }));

      // Replay: the first presentation ends the sessions; the same request again is refused.
      const url = logoutRequestUrl(user.nameId);
      assert.equal((await logoutResponseOf(await fetch(url, { redirect: 'manual' }))).status, SUCCESS);
      assert.equal(await userinfoWorks(user.accessToken), false);
      const again = await signedInUser(user.email);
      assert.equal(again.userId, user.userId, 'the same user, signed in again');
      assert.equal((await logoutResponseOf(await fetch(url, { redirect: 'manual' }))).status, REQUESTER);
      assert.ok(await userinfoWorks(again.accessToken), 'the replay ends nothing');
      assert.equal((await signedOutEvents(user.userId)).length, 1);
    });
  });
});
