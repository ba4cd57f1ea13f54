import { auditCaller } from '@warden/tools';
import type { SsoConfig, SsoConfigService, TenantService } from '@warden/vault';
import { validateIdentifier, validateSsoConfigInput } from '@warden/vault';
import { WardenError, notFound } from '@warden/core';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { actorOf, principalRef, tenantAuth, tenantOf } from '../http/auth.ts';
import { errorResponses } from '../http/schemas.ts';
import { apiKeyCaller } from '../http/tools.routes.ts';
import type { AddressLimit } from './address-limit.ts';
import type { LoginLinks } from './login-links.ts';
import type { OAuthAudit } from './oauth-audit.ts';
import type { ConsentView, OAuthServer } from './oauth-server.ts';
import type { SsoRelyingParty } from './sso.ts';

const security = [{ tenantKey: [] }];

const ssoSchema = z
  .object({
    issuer: z.string(),
    client_id: z.string(),
    identifier_claim: z.string(),
    allowed_email_domains: z.array(z.string()),
    domains: z
      .array(
        z.object({
          domain: z.string(),
          status: z
            .enum(['verified', 'pending', 'held_elsewhere'])
            .describe(
              '`verified`: engineers of this domain are sent to this provider (one proven by DNS stays verified while its `txt_record` stays published: see `proof_missing_since`). `pending`: publish `txt_record`, then POST …/sso/domains/{domain}/verify (with `txt_record` null, nobody holds the domain now: verify claims it again, and under the DNS proof gives it a record). `held_elsewhere`: another organization proved it first.',
            ),
          txt_record: z
            .object({ type: z.literal('TXT'), name: z.string(), value: z.string() })
            .nullable()
            .describe(
              'The DNS record that proves a pending domain, and that keeps a domain verified by it proven (Warden looks it up again every SSO_DOMAIN_RECHECK_HOURS); null when there is none to publish (verified without a record, held elsewhere, or pending with no claim yet).',
            ),
          proof_missing_since: z
            .string()
            .nullable()
            .describe(
              'A verified domain whose `txt_record` a re-check found missing: since when (it is in the trail as sso.domain_proof_missing); null otherwise. Publish the record again and POST …/verify to end it at once.',
            ),
          lapses_at: z
            .string()
            .nullable()
            .describe(
              'When such a domain lapses to pending (engineers of it are no longer sent here, and another organization may prove it) unless its record is back; null otherwise.',
            ),
        }),
      )
      .describe('Where each allowed domain stands: only verified ones route and sign engineers in.'),
    console_admins: z
      .array(z.string())
      .describe('Identifiers that may sign in to the admin console with this provider (none by default).'),
    redirect_uri: z.string().describe('Register this redirect URI for Warden’s client at your provider.'),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .meta({ id: 'McpSso' });

const consentSchema = z
  .object({
    id: z.string().describe('`oag_…`: the grant; MCP tool calls made under it carry it as caller id.'),
    identifier: z.string(),
    client_id: z.string(),
    client_name: z.string().nullable(),
    redirect_host: z.string().nullable(),
    created_at: z.string(),
    expires_at: z.string().nullable(),
  })
  .meta({ id: 'McpConsent' });

function ssoJson(config: SsoConfig, redirectUri: string) {
  return {
    issuer: config.issuer,
    client_id: config.clientId,
    identifier_claim: config.identifierClaim,
    allowed_email_domains: [...config.allowedEmailDomains],
    domains: config.domains.map((d) => ({
      domain: d.domain,
      status: d.status,
      txt_record: d.txtRecord ? { type: 'TXT' as const, ...d.txtRecord } : null,
      proof_missing_since: d.proofMissingSince?.toISOString() ?? null,
      lapses_at: d.lapsesAt?.toISOString() ?? null,
    })),
    console_admins: [...config.consoleAdmins],
    redirect_uri: redirectUri,
    created_at: config.createdAt.toISOString(),
    updated_at: config.updatedAt.toISOString(),
  };
}

function consentJson(c: ConsentView) {
  return {
    id: c.id,
    identifier: c.identifier,
    client_id: c.clientId,
    client_name: c.clientName,
    redirect_host: c.redirectHost,
    created_at: c.createdAt.toISOString(),
    expires_at: c.expiresAt?.toISOString() ?? null,
  };
}

/** The tenant's side of MCP sign-in: its SSO provider, login links, and the consents engineers gave. */
export async function oauthTenantRoutes(
  app: FastifyInstance,
  deps: {
    tenants: Pick<TenantService, 'authenticate'>;
    server: OAuthServer;
    ssoConfigs: SsoConfigService;
    sso: SsoRelyingParty;
    loginLinks: LoginLinks;
    audit: OAuthAudit;
    /** Domain proofs per tenant (each may ask DNS). */
    verifyLimit: AddressLimit;
    allowInsecure: boolean;
  },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('preHandler', tenantAuth(deps.tenants));

  r.put('/api/v1/mcp/sso', {
    schema: {
      tags: ['mcp'],
      summary: 'Configure the OpenID Connect provider engineers sign in with (the client secret is sealed)',
      security,
      body: z.strictObject({
        issuer: z.string().describe('The provider’s issuer URL (https).'),
        client_id: z.string(),
        client_secret: z.string(),
        identifier_claim: z
          .string()
          .optional()
          .describe('The ID token claim that becomes the MCP identifier. Default "email".'),
        allowed_email_domains: z
          .array(z.string())
          .describe(
            'Engineers sign in only with a verified email in one of these domains, and the sign-in page sends an email of these domains to this provider, once the organization has proven the domain (a DNS TXT record, see `domains`; unless the deployment sets SSO_DOMAIN_PROOF=none). A domain belongs to one organization only: one another organization holds is refused with 409.',
          ),
        console_admins: z
          .array(z.string())
          .optional()
          .describe(
            'Identifiers (values of `identifier_claim`) that may also sign in to the admin console at /console with this provider. Default none: the console then takes only API keys. Changing the configuration ends SSO console sessions.',
          ),
      }),
      response: { 200: z.object({ sso: ssoSchema }), ...errorResponses },
    },
    handler: async (request) => {
      const input = validateSsoConfigInput(
        {
          issuer: request.body.issuer,
          clientId: request.body.client_id,
          clientSecret: request.body.client_secret,
          identifierClaim: request.body.identifier_claim ?? 'email',
          allowedEmailDomains: request.body.allowed_email_domains,
          consoleAdmins: request.body.console_admins ?? [],
        },
        { allowInsecureIssuers: deps.allowInsecure },
      );
      await deps.sso.verifyIssuer(input.issuer, input.clientId, input.clientSecret);
      const config = await deps.ssoConfigs.put(actorOf(request), input);
      return { sso: ssoJson(config, deps.sso.redirectUri) };
    },
  });

  r.post('/api/v1/mcp/sso/domains/:domain/verify', {
    schema: {
      tags: ['mcp'],
      summary:
        'Prove an allowed email domain by its DNS TXT record (`domains[].txt_record`; a listed domain nobody holds is claimed again first); the first organization to prove a domain keeps it',
      security,
      params: z.object({ domain: z.string().max(253) }),
      response: { 200: z.object({ sso: ssoSchema }), ...errorResponses },
    },
    handler: async (request) => {
      const actor = actorOf(request);
      await deps.verifyLimit.admit(actor.tenantId, 'domain proofs asked for');
      const config = await deps.ssoConfigs.verifyDomain(actor, request.params.domain);
      return { sso: ssoJson(config, deps.sso.redirectUri) };
    },
  });

  r.get('/api/v1/mcp/sso', {
    schema: {
      tags: ['mcp'],
      summary: 'The tenant’s SSO configuration for MCP sign-in (never the secret)',
      security,
      response: { 200: z.object({ sso: ssoSchema }), ...errorResponses },
    },
    handler: async (request) => {
      const config = await deps.ssoConfigs.get(tenantOf(request).tenantId);
      if (!config) throw notFound('SSO configuration');
      return { sso: ssoJson(config, deps.sso.redirectUri) };
    },
  });

  r.delete('/api/v1/mcp/sso', {
    schema: {
      tags: ['mcp'],
      summary:
        'Remove the SSO configuration (engineers can no longer sign in with it; SSO console sessions end)',
      security,
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.ssoConfigs.remove(actorOf(request));
      return reply.code(204).send(null);
    },
  });

  r.post('/api/v1/mcp/login_links', {
    schema: {
      tags: ['mcp'],
      summary: 'A one-time, short-lived link that signs an identifier in to the MCP OAuth flow',
      description:
        "Made by the tenant's backend with an API key, which vouches for its engineer. A console session signed in through SSO cannot make one (403): whoever holds a link signs in as its identifier, and the grant it leads to would outlive the person who made it.",
      security,
      body: z.strictObject({ identifier: z.string() }),
      response: { 201: z.object({ url: z.string(), expires_at: z.string() }), ...errorResponses },
    },
    handler: async (request, reply) => {
      const caller = tenantOf(request);
      if (caller.type === 'sso') {
        throw new WardenError(
          'forbidden',
          "sign-in links are made by the tenant's backend with an API key; a person signed in through SSO mints an MCP token instead (POST /api/v1/mcp/tokens), which offboarding them revokes",
        );
      }
      const link = await deps.loginLinks.create({
        tenantId: caller.tenantId,
        identifier: validateIdentifier(request.body.identifier),
        createdBy: principalRef(caller),
      });
      return reply.code(201).send({ url: link.url, expires_at: link.expiresAt.toISOString() });
    },
  });

  r.get('/api/v1/mcp/consents', {
    schema: {
      tags: ['mcp'],
      summary: 'Consents engineers gave MCP clients (OAuth grants), newest first',
      security,
      querystring: z.object({ identifier: z.string().optional() }),
      response: { 200: z.object({ consents: z.array(consentSchema) }), ...errorResponses },
    },
    handler: async (request) => {
      const identifier =
        request.query.identifier === undefined ? undefined : validateIdentifier(request.query.identifier);
      const consents = await deps.server.listConsents(tenantOf(request).tenantId, identifier);
      return { consents: consents.map(consentJson) };
    },
  });

  r.delete('/api/v1/mcp/consents/:id', {
    schema: {
      tags: ['mcp'],
      summary: 'Revoke a consent: its grant, refresh and access tokens, and live sessions, at once',
      security,
      params: z.object({ id: z.string().max(100) }),
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      const caller = apiKeyCaller(request);
      const revoked = await deps.server.revokeConsent(caller.tenantId, request.params.id);
      if (!revoked) throw notFound('consent');
      await deps.audit(caller.tenantId, {
        action: 'mcp_oauth.consent_revoked',
        outcome: 'success',
        identifier: revoked.identifier,
        caller: auditCaller(caller),
      });
      return reply.code(204).send(null);
    },
  });
}
