import { z } from 'zod';
import { displayText, idpAlias as alias, text, scopeToken } from './schemas.ts';

// /api/v1/identity-providers: one create schema per type (the body names its type), the same
// fields optional for PATCH (the type and alias never change).

const domain = z.string().max(253).regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/i, 'must be a domain name');
const url = z.string().max(2048);
const claim = text(200);

const claimMapping = z.strictObject({
  subject: claim.optional(),
  email: claim.optional(),
  emailVerified: claim.nullable().optional(),
  name: claim.nullable().optional(),
  givenName: claim.nullable().optional(),
  familyName: claim.nullable().optional(),
  groups: claim.nullable().optional(),
}).describe('Which upstream claim or attribute gives each field; unnamed fields keep their defaults');

const common = {
  displayName: displayText(100).describe('Shown on the login page as "Continue with {displayName}"'),
  enabled: z.boolean().optional(),
  allowedDomains: z.array(domain).max(100).optional().describe('Email domains this provider serves: home-realm discovery sends these addresses to it'),
  jitProvisioning: z.enum(['on', 'off']).optional().describe('Create a local user at the first sign-in (default on)'),
  accountLinking: z.enum(['prove-control', 'off']).optional().describe('prove-control (default): an existing account with the same email is linked only after its owner proves control of it; off: never linked'),
  trustEmail: z.boolean().optional().describe('Count upstream emails as verified even when the upstream does not say so (default false)'),
  trustUpstreamMfa: z.boolean().optional().describe("Accept the upstream's MFA as this sign-in's second factor (default false: the local factor is asked when the user has one)"),
};

const oauthClient = {
  clientId: text(255),
  clientSecret: z.string().min(1).max(1024).optional().describe('Sealed at rest, never returned'),
  scopes: z.array(scopeToken).min(1).max(50).optional(),
  tokenEndpointAuthMethod: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
  claimMapping: claimMapping.optional(),
};

const oidcCreate = z.strictObject({ alias, type: z.literal('oidc'), ...common, issuer: url, ...oauthClient });
const oauth2Create = z.strictObject({
  alias, type: z.literal('oauth2'), ...common,
  authorizationEndpoint: url, tokenEndpoint: url, userinfoEndpoint: url, ...oauthClient,
});
const samlCreate = z.strictObject({
  alias, type: z.literal('saml'), ...common,
  metadataXml: z.string().min(1).max(512 * 1024).optional(),
  metadataUrl: url.optional(),
  wantAssertionsSigned: z.boolean().optional().describe('Require the assertion itself to be signed (default true); a signed response is always required otherwise'),
  signAuthnRequests: z.boolean().optional(),
  attributeMapping: claimMapping.optional(),
}).refine((v) => (v.metadataXml === undefined) !== (v.metadataUrl === undefined), 'give exactly one of metadataXml and metadataUrl');

export const identityProviderCreate = z.union([oidcCreate, oauth2Create, samlCreate]);

const optionalCommon = { ...common, displayName: common.displayName.optional() };
const nullableSecret = { ...oauthClient, clientId: oauthClient.clientId.optional(), clientSecret: oauthClient.clientSecret.unwrap().nullable().optional() };
export const identityProviderUpdates = {
  oidc: z.strictObject({ ...optionalCommon, issuer: url.optional(), ...nullableSecret }),
  oauth2: z.strictObject({
    ...optionalCommon, authorizationEndpoint: url.optional(), tokenEndpoint: url.optional(), userinfoEndpoint: url.optional(), ...nullableSecret,
  }),
  saml: z.strictObject({
    ...optionalCommon,
    metadataXml: z.string().min(1).max(512 * 1024).optional(),
    metadataUrl: url.optional(),
    wantAssertionsSigned: z.boolean().optional(),
    signAuthnRequests: z.boolean().optional(),
    attributeMapping: claimMapping.optional(),
  }),
};
export const identityProviderUpdate = z.union([identityProviderUpdates.oidc, identityProviderUpdates.oauth2, identityProviderUpdates.saml]);

const mapping = z.object({
  subject: z.string(), email: z.string(), emailVerified: z.string().nullable(), name: z.string().nullable(),
  givenName: z.string().nullable(), familyName: z.string().nullable(), groups: z.string().nullable(),
});

export const identityProvider = z.object({
  id: z.string(),
  alias: z.string(),
  type: z.enum(['oidc', 'oauth2', 'saml']),
  displayName: z.string(),
  enabled: z.boolean(),
  allowedDomains: z.array(z.string()),
  jitProvisioning: z.enum(['on', 'off']),
  accountLinking: z.enum(['prove-control', 'off']),
  trustEmail: z.boolean(),
  trustUpstreamMfa: z.boolean(),
  hasClientSecret: z.boolean().describe('The secret itself is never returned'),
  oidc: z.object({ issuer: z.string(), clientId: z.string(), scopes: z.array(z.string()), tokenEndpointAuthMethod: z.string(), claimMapping: mapping }).optional(),
  oauth2: z.object({
    authorizationEndpoint: z.string(), tokenEndpoint: z.string(), userinfoEndpoint: z.string(),
    clientId: z.string(), scopes: z.array(z.string()), tokenEndpointAuthMethod: z.string(), claimMapping: mapping,
  }).optional(),
  saml: z.object({
    entityId: z.string().describe("The IdP's entityID, from its metadata"),
    metadataUrl: z.string().nullable(),
    ssoRedirectUrl: z.string(),
    wantAssertionsSigned: z.boolean(),
    signAuthnRequests: z.boolean(),
    attributeMapping: mapping,
  }).optional(),
  endpoints: z.record(z.string(), z.string()).describe('Our side of the federation, to register at the upstream: redirectUri (oidc, oauth2) or entityId, metadataUrl, acsUrl, sloUrl (saml)'),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
