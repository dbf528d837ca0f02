import { inflateRawSync } from 'node:zlib';
import * as samlify from 'samlify';
import { SignedXml } from 'xml-crypto';
import { selfSignedIdentity as generate, type SigningIdentity } from '../../src/infra/self-signed-certificate.ts';

export type { SigningIdentity };

/** A self-signed RSA certificate and its key, as a SAML IdP signs with. */
export const selfSignedIdentity = (commonName = 'test-idp') => generate(commonName, 30);

/** IdP metadata as a real IdP publishes it: entity ID, signing certificate, HTTP-Redirect sign-on. */
export function samlIdpMetadata(opts: { entityId: string; ssoUrl: string; identity: SigningIdentity }): string {
  return samlify.IdentityProvider({
    entityID: opts.entityId,
    signingCert: opts.identity.certificatePem,
    singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: opts.ssoUrl }],
    singleLogoutService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: new URL('/slo', opts.ssoUrl).href }],
  }).getMetadata();
}

const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const SAML = 'urn:oasis:names:tc:SAML:2.0:assertion';
const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** What a test IdP's login response says; every field may be set wrong on purpose. */
export interface LoginResponseFields {
  id: string;
  destination: string;
  /** Omitted: an unsolicited (IdP-initiated) response. */
  inResponseTo?: string;
  issuer: string;
  assertionId: string;
  nameId: string;
  recipient: string;
  audience: string;
  notBefore: Date;
  notOnOrAfter: Date;
  /** The bearer confirmation's own InResponseTo; the Response's by default. */
  confirmationInResponseTo?: string;
  /** The bearer confirmation's own limit; the Conditions' by default. */
  confirmationNotOnOrAfter?: Date;
  attributes: Record<string, string | string[]>;
}

/** An unsigned SAML 2.0 Response with one bearer Assertion, as an IdP writes it before signing. */
export function loginResponseXml(f: LoginResponseFields): string {
  const now = new Date().toISOString();
  const irt = f.inResponseTo ? ` InResponseTo="${esc(f.inResponseTo)}"` : '';
  const confirmationIrt = f.confirmationInResponseTo ? ` InResponseTo="${esc(f.confirmationInResponseTo)}"` : irt;
  const attributes = Object.entries(f.attributes).map(([name, values]) =>
    `<saml:Attribute Name="${esc(name)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${
      (Array.isArray(values) ? values : [values]).map((v) => `<saml:AttributeValue xsi:type="xs:string">${esc(v)}</saml:AttributeValue>`).join('')
    }</saml:Attribute>`).join('');
  return `<samlp:Response xmlns:samlp="${SAMLP}" xmlns:saml="${SAML}" ID="${esc(f.id)}" Version="2.0" IssueInstant="${now}" Destination="${esc(f.destination)}"${irt}>`
    + `<saml:Issuer>${esc(f.issuer)}</saml:Issuer>`
    + `<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>`
    + `<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="${esc(f.assertionId)}" Version="2.0" IssueInstant="${now}">`
    + `<saml:Issuer>${esc(f.issuer)}</saml:Issuer>`
    + `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">${esc(f.nameId)}</saml:NameID>`
    + `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="${(f.confirmationNotOnOrAfter ?? f.notOnOrAfter).toISOString()}" Recipient="${esc(f.recipient)}"${confirmationIrt}/></saml:SubjectConfirmation></saml:Subject>`
    + `<saml:Conditions NotBefore="${f.notBefore.toISOString()}" NotOnOrAfter="${f.notOnOrAfter.toISOString()}"><saml:AudienceRestriction><saml:Audience>${esc(f.audience)}</saml:Audience></saml:AudienceRestriction></saml:Conditions>`
    + `<saml:AuthnStatement AuthnInstant="${now}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>`
    + `<saml:AttributeStatement>${attributes}</saml:AttributeStatement>`
    + `</saml:Assertion></samlp:Response>`;
}

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const TRANSFORMS = ['http://www.w3.org/2000/09/xmldsig#enveloped-signature', 'http://www.w3.org/2001/10/xml-exc-c14n#'];

/**
 * Signs without samlify, with xml-crypto as many IdPs do: the Assertion (its signature after its
 * Issuer, where the schema wants it), the Response, or both; without KeyInfo unless asked, so the
 * verifier must use the certificate it trusts.
 */
export function signWithXmlCrypto(xml: string, key: SigningIdentity, parts: ('assertion' | 'response')[], opts: { keyInfo?: boolean } = {}): string {
  let signed = xml;
  for (const part of parts) {
    const element = part === 'assertion' ? "/*[local-name(.)='Response']/*[local-name(.)='Assertion']" : "/*[local-name(.)='Response']";
    const sig = new SignedXml({
      privateKey: key.privateKeyPem,
      ...(opts.keyInfo ? { publicCert: key.certificatePem } : {}),
      signatureAlgorithm: RSA_SHA256,
      canonicalizationAlgorithm: 'http://www.w3.org/2001/10/xml-exc-c14n#',
    });
    sig.addReference({ xpath: element, digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256', transforms: TRANSFORMS });
    sig.computeSignature(signed, { prefix: 'ds', location: { reference: `${element}/*[local-name(.)='Issuer']`, action: 'after' } });
    signed = sig.getSignedXml();
  }
  return signed;
}

/**
 * A samlify IdP: it signs `xml` as our SP's metadata asks (the Assertion when it wants assertions
 * signed, else the Response) through createLoginResponse, and answers the base64 SAMLResponse.
 */
export async function signWithSamlify(xml: string, opts: { entityId: string; key: SigningIdentity; spMetadata: string; requestId?: string }): Promise<string> {
  const idp = samlify.IdentityProvider({
    entityID: opts.entityId,
    privateKey: opts.key.privateKeyPem,
    signingCert: opts.key.certificatePem,
    singleSignOnService: [{ Binding: 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect', Location: 'https://idp.test/sso' }],
  });
  const sp = samlify.ServiceProvider({ metadata: opts.spMetadata });
  const id = /ID="([^"]+)"/.exec(xml)![1]!;
  const { context } = await idp.createLoginResponse(sp, { extract: { request: { id: opts.requestId ?? '' } } }, 'post', {}, {
    customTagReplacement: () => ({ id, context: xml }),
  });
  return context;
}

/** The AuthnRequest in an HTTP-Redirect URL (inflated), with its ID. */
export function authnRequestOf(url: URL): { id: string; xml: string } {
  const xml = inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest')!, 'base64')).toString('utf8');
  return { id: /\sID="([^"]+)"/.exec(xml)![1]!, xml };
}
