import { createSsoConfigService, ssoPrincipalRef } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ConsoleSsoSignIn } from '../console/console.routes.ts';
import type { Container } from '../container.ts';
import { createLoginLinks } from './login-links.ts';
import { createOAuthAudit } from './oauth-audit.ts';
import { oauthRoutes } from './oauth.routes.ts';
import { createOAuthServer } from './oauth-server.ts';
import type { OAuthServer } from './oauth-server.ts';
import { oauthTenantRoutes } from './oauth-tenant.routes.ts';
import { clientScope, clientWindows, createAddressLimit } from './address-limit.ts';
import type { BudgetSpec } from '@warden/ratelimit';
import { createSsoRelyingParty } from './sso.ts';
import { ssoAdminRoutes } from './sso-admin.routes.ts';

/**
 * MCP sign-in: Warden's OAuth authorization server for /mcp, its sign-in pages and the
 * tenant API around it; the tenant's SSO also signs console admins in (`consoleSignIn`). Returns the server, whose `authenticate` turns an access token into
 * an MCP session.
 */
export async function setUpMcpOAuth(
  app: FastifyInstance,
  container: Pick<
    Container,
    | 'config'
    | 'db'
    | 'envelope'
    | 'audit'
    | 'lifecycleAudit'
    | 'settings'
    | 'invalidate'
    | 'logger'
    | 'tenants'
    | 'connectedAccounts'
    | 'policies'
    | 'scopedTools'
    | 'redis'
    | 'domainProof'
    | 'mcpTokens'
  >,
  consoleSignIn: ConsoleSsoSignIn,
): Promise<OAuthServer> {
  const { config } = container;
  const db = container.db.kysely;
  const allowInsecure = config.oauth.allowInsecure;
  const audit = createOAuthAudit({
    audit: container.audit,
    tenantSettings: (tenantId) => container.settings.effective(tenantId),
  });
  const ssoConfigs = createSsoConfigService({
    db,
    envelope: container.envelope,
    allowInsecureIssuers: allowInsecure,
    audit: container.lifecycleAudit,
    domainProof: container.domainProof,
    // A console admin taken off the list was shown the MCP tokens they minted for others (their own stay).
    onAdminsRemoved: async (ctx, admins) => {
      for (const admin of admins)
        await container.mcpTokens.revokeMintedBy(ctx, ssoPrincipalRef(admin), admin);
    },
  });
  const server = createOAuthServer({
    db,
    envelope: container.envelope,
    options: {
      publicUrl: config.publicUrl,
      accessTokenTtlSeconds: config.oauth.accessTokenTtlSeconds,
      refreshTokenTtlSeconds: config.oauth.refreshTokenTtlSeconds,
      allowInsecure,
      unusedClientTtlSeconds: config.oauth.unusedClientTtlSeconds,
    },
    audit,
    // Its live sessions and running calls end on every replica, like a minted token's.
    onGrantRevoked: (tenantId, identifier, tokenId) =>
      container.invalidate({ tenantId, identifier, tokenId, reason: 'revoked' }),
    logger: container.logger,
  });
  const sso = createSsoRelyingParty({ ssoConfigs, publicUrl: config.publicUrl, allowInsecure });
  const loginLinks = createLoginLinks({
    db,
    publicUrl: config.publicUrl,
    ttlSeconds: config.oauth.loginLinkTtlSeconds,
  });
  /** A limit per client address (its /64, /56 and /48, or its IPv4), shared by replicas. */
  const perClient = (spec: BudgetSpec, name: string) =>
    createAddressLimit({
      spec,
      redis: container.redis,
      keyPrefix: `${config.redisKeyPrefix}:${name}`,
      windowsOf: clientWindows,
      scopeOf: clientScope,
    });
  const registrationLimit = perClient(config.oauth.registrationLimit, 'oauth-register');
  const signInLimit = perClient(config.oauth.signInLimit, 'sso-start');
  const authorizationLimit = perClient(config.oauth.signInLimit, 'oauth-authorize');
  // Per tenant, not per address: each proof request may send Warden's resolver to DNS.
  const verifyLimit = createAddressLimit({
    spec: config.oauth.verifyLimit,
    redis: container.redis,
    keyPrefix: `${config.redisKeyPrefix}:sso-verify`,
    scopeOf: () => ' per organization',
  });
  app.addHook('onClose', async () => {
    await Promise.all([
      registrationLimit.close(),
      signInLimit.close(),
      authorizationLimit.close(),
      verifyLimit.close(),
    ]);
  });
  await app.register(async (scope) =>
    oauthRoutes(scope, {
      server,
      registrationLimit,
      signInLimit,
      authorizationLimit,
      db,
      publicUrl: config.publicUrl,
      tenants: container.tenants,
      accounts: container.connectedAccounts,
      policies: container.policies,
      scopedTools: container.scopedTools,
      ssoConfigs,
      sso,
      loginLinks,
      audit,
      console: consoleSignIn,
      logger: container.logger,
    }),
  );
  await app.register(async (scope) =>
    oauthTenantRoutes(scope, {
      tenants: container.tenants,
      server,
      ssoConfigs,
      sso,
      loginLinks,
      audit,
      verifyLimit,
      allowInsecure,
    }),
  );
  await app.register(async (scope) => ssoAdminRoutes(scope, { ssoConfigs, adminToken: config.adminToken }));
  return server;
}
