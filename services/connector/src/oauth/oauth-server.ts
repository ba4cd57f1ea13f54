import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@warden/core';
import type { Database } from '@warden/db';
import type { McpSession } from '@warden/vault';
import type { Envelope } from '@warden/vault';
import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import Provider, { errors } from 'oidc-provider';
import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { isPrivateHost, publicOnlyLookup } from '@warden/audit';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  accountIdFor,
  artifactAdapterFactory,
  createRecordStore,
  parseAccountId,
} from './oauth-artifacts.ts';
import type { OAuthAudit } from './oauth-audit.ts';
import { grantIdOf, grantTokenId, oauthCaller } from './oauth-audit.ts';
import { loadOAuthServerKeys } from './oauth-keys.ts';
import type { OAuthServerKeys } from './oauth-keys.ts';
import { errorPage } from './oauth-pages.ts';

/** The one scope of the MCP resource; the audience, not the scope, is what binds a token to Warden. */
export const MCP_SCOPE = 'mcp';

export interface OAuthServerOptions {
  readonly publicUrl: string;
  readonly accessTokenTtlSeconds: number;
  readonly refreshTokenTtlSeconds: number;
  readonly allowInsecure: boolean;
  /** A dynamically registered client that gets no grant within this long is forgotten. */
  readonly unusedClientTtlSeconds: number;
}

/** What Warden remembers about a consent beside oidc-provider's grant: for listing it. */
interface ConsentRecord {
  readonly grantId: string;
  readonly accountId: string;
  readonly clientId: string;
  readonly clientName: string;
  readonly redirectHost: string;
}

export interface ConsentView {
  readonly id: string;
  readonly identifier: string;
  readonly clientId: string;
  readonly clientName: string | null;
  readonly redirectHost: string | null;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
}

export const INTERACTION_TTL_SECONDS = 30 * 60;
/** Dynamic Client Registration (RFC 7591), as the authorization server metadata advertises it. */
export const REGISTRATION_PATH = '/oauth/register';
export const AUTHORIZATION_PATH = '/oauth/authorize';
const SESSION_TTL_SECONDS = 3600;

/**
 * Warden as the OAuth 2.1 authorization server of its own MCP endpoint, built on
 * oidc-provider: authorization code with PKCE (S256) only, public clients registered by
 * Client ID Metadata Document or Dynamic Client Registration, every access token bound to
 * PUBLIC_URL/mcp (RFC 8707), opaque and checked on every request, refresh tokens rotated
 * on each use (a reused one revokes its whole grant), RFC 7009 revocation.
 */
export function createOAuthServer(deps: {
  db: Kysely<Database>;
  envelope: Envelope;
  options: OAuthServerOptions;
  audit: OAuthAudit;
  /** Closes the live MCP connections of a grant (on every replica) once it is revoked. */
  onGrantRevoked: (tenantId: string, identifier: string, tokenId: string) => Promise<void>;
  logger: Logger;
}) {
  const { db, options } = deps;
  const issuer = options.publicUrl;
  const audience = `${options.publicUrl}/mcp`;
  const consents = createRecordStore<ConsentRecord>(db, 'Consent');

  async function rememberedGrantId(accountId: string, clientId: string): Promise<string | undefined> {
    const account = parseAccountId(accountId);
    if (!account) return undefined;
    const row = await db
      .selectFrom('oauth_artifacts')
      .select('id')
      .where('model', '=', 'Grant')
      .where('tenant_id', '=', account.tenantId)
      .where('identifier', '=', account.identifier)
      .where('client_id', '=', clientId)
      .where(sql<boolean>`(expires_at is null or expires_at > now())`)
      .orderBy('created_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row?.id;
  }

  function buildProvider(keys: OAuthServerKeys): Provider {
    // Tests and demos only: client metadata documents on loopback with a self-signed certificate.
    // Otherwise a document is fetched only from a public address: a client_id naming a loopback
    // or private address would make Warden a probe of its own network (SSRF).
    const fetchAgent = options.allowInsecure
      ? new Agent({ connect: { rejectUnauthorized: false } })
      : new Agent({ connect: { lookup: publicOnlyLookup } });

    const configuration: Configuration = {
      adapter: artifactAdapterFactory(db, { unusedClientTtlSeconds: options.unusedClientTtlSeconds }),
      clients: [],
      clientDefaults: {
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        id_token_signed_response_alg: 'RS256',
      },
      // Public clients only: a client secret would have to be stored where tokens are hashed.
      clientAuthMethods: ['none'],
      responseTypes: ['code'],
      scopes: ['openid', 'offline_access', MCP_SCOPE],
      claims: { openid: ['sub'] },
      cookies: {
        keys: [...keys.cookieKeys],
        names: {
          session: 'warden_oauth_session',
          interaction: 'warden_oauth_interaction',
          resume: 'warden_oauth_resume',
        },
        long: { httpOnly: true, sameSite: 'lax' },
        short: { httpOnly: true, sameSite: 'lax' },
      },
      jwks: { keys: [keys.signingKey] },
      pkce: { required: () => true },
      features: {
        devInteractions: { enabled: false },
        registration: { enabled: true, issueRegistrationAccessToken: false },
        // A client revokes only its own tokens; anything else is ignored, as RFC 7009 allows.
        revocation: {
          enabled: true,
          allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
        },
        introspection: { enabled: false },
        userinfo: { enabled: false },
        rpInitiatedLogout: { enabled: false },
        dPoP: { enabled: false },
        pushedAuthorizationRequests: { enabled: false },
        clientIdMetadataDocument: {
          enabled: true,
          ack: 'draft-02',
          cacheDuration: { min: 60, max: 3600 },
        },
        resourceIndicators: {
          enabled: true,
          // A request that names no resource still gets a token bound to this MCP endpoint.
          defaultResource: () => audience,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx, resourceIndicator) => {
            if (resourceIndicator !== audience) {
              throw new errors.InvalidTarget(`the only resource here is ${audience}`);
            }
            return {
              scope: MCP_SCOPE,
              audience,
              accessTokenTTL: options.accessTokenTtlSeconds,
              accessTokenFormat: 'opaque',
            };
          },
        },
      },
      extraTokenClaims: (ctx) => ({ client_name: ctx.oidc.client?.clientName ?? null }),
      issueRefreshToken: (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      rotateRefreshToken: true,
      // Tokens outlive the browser session that approved them; revocation is explicit.
      expiresWithSession: () => false,
      ttl: {
        AccessToken: options.accessTokenTtlSeconds,
        AuthorizationCode: 60,
        IdToken: 300,
        RefreshToken: options.refreshTokenTtlSeconds,
        Grant: options.refreshTokenTtlSeconds,
        Interaction: INTERACTION_TTL_SECONDS,
        Session: SESSION_TTL_SECONDS,
      },
      interactions: { url: (_ctx, interaction) => `/oauth/interaction/${interaction.uid}` },
      // A consent is remembered per identity and client, not only per browser session.
      async loadExistingGrant(ctx) {
        const clientId = ctx.oidc.client?.clientId;
        const accountId = ctx.oidc.session?.accountId;
        const grantId =
          ctx.oidc.result?.consent?.grantId ??
          (clientId ? ctx.oidc.session?.grantIdFor(clientId) : undefined) ??
          (accountId && clientId ? await rememberedGrantId(accountId, clientId) : undefined);
        return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
      },
      findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
      async renderError(ctx, out) {
        const rendered = errorPage('Sign-in failed', `${out.error}: ${out.error_description ?? ''}`);
        ctx.status = rendered.status;
        ctx.set(rendered.headers);
        ctx.body = rendered.body;
      },
      routes: {
        authorization: AUTHORIZATION_PATH,
        token: '/oauth/token',
        registration: REGISTRATION_PATH,
        revocation: '/oauth/revoke',
        jwks: '/oauth/jwks',
        end_session: '/oauth/session/end',
        userinfo: '/oauth/userinfo',
        introspection: '/oauth/introspect',
        pushed_authorization_request: '/oauth/par',
        code_verification: '/oauth/device',
        device_authorization: '/oauth/device/auth',
        backchannel_authentication: '/oauth/backchannel',
        challenge: '/oauth/challenge',
        credential: '/oauth/credential',
      },
      fetch: ((url: string, init: Parameters<typeof undiciFetch>[1]) => {
        // The lookup guard never sees an address written as one (https://127.0.0.1/…).
        if (!options.allowInsecure && isPrivateHost(new URL(url).hostname)) {
          return Promise.reject(
            new Error('client metadata documents are fetched only from public addresses'),
          );
        }
        return undiciFetch(url, { ...init, dispatcher: fetchAgent });
      }) as unknown as typeof fetch,
    };

    const provider = new Provider(issuer, configuration);
    // Warden sets the forwarded headers itself (see `forward`), so URLs are built from PUBLIC_URL.
    provider.proxy = true;

    /**
     * Audits token issuance and refresh token reuse before the answer leaves, and ends the running
     * work of a grant whose token a client revoked (RFC 7009).
     */
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'token') await auditToken(ctx as KoaContextWithOIDC);
      else if (ctx.oidc?.route === 'revocation') await endRevoked(ctx as KoaContextWithOIDC);
    });
    return provider;
  }

  let ready: Promise<{ provider: Provider; callback: ReturnType<Provider['callback']> }> | null = null;
  /**
   * The provider is built on first use, not at start: its keys are sealed, so building it
   * needs the KMS, and a KMS outage must not stop the service (it fails this request, 503).
   */
  function load() {
    if (!ready) {
      const loading = loadOAuthServerKeys(db, deps.envelope).then((keys) => {
        const provider = buildProvider(keys);
        return { provider, callback: provider.callback() };
      });
      loading.catch(() => {
        if (ready === loading) ready = null;
      });
      ready = loading;
    }
    return ready;
  }

  async function auditToken(ctx: KoaContextWithOIDC): Promise<void> {
    const { entities } = ctx.oidc;
    const clientName = entities.Client?.clientName ?? null;
    const body = ctx.body as { access_token?: string; error?: string } | undefined;
    if (ctx.status === 200 && body?.access_token && entities.AccessToken) {
      const token = entities.AccessToken;
      const account = parseAccountId(token.accountId);
      if (!account) return;
      try {
        await deps.audit(account.tenantId, {
          action: 'mcp_oauth.token_issued',
          outcome: 'success',
          identifier: account.identifier,
          caller: oauthCaller({ grantId: token.grantId ?? null, clientName, ip: ctx.ip }),
        });
      } catch (error) {
        // No token leaves without its record: withdraw what was issued.
        deps.logger.error({ err: error }, 'MCP token issuance not audited; tokens withdrawn');
        await Promise.all([token.destroy(), entities.RefreshToken?.destroy()]);
        ctx.status = 503;
        ctx.body = { error: 'temporarily_unavailable', error_description: 'the audit trail is unavailable' };
      }
      return;
    }
    const reused = entities.RefreshToken;
    if (body?.error === 'invalid_grant' && reused?.consumed && reused.grantId) {
      const account = parseAccountId(reused.accountId);
      if (!account) return;
      try {
        await deps.onGrantRevoked(account.tenantId, account.identifier, grantTokenId(reused.grantId));
        await deps.audit(account.tenantId, {
          action: 'mcp_oauth.refresh_reuse',
          outcome: 'refused',
          identifier: account.identifier,
          caller: oauthCaller({ grantId: reused.grantId, clientName, ip: ctx.ip }),
          error: {
            code: 'invalid_grant',
            message: 'a refresh token was used twice; the whole grant was revoked',
          },
        });
      } catch (error) {
        // The grant is revoked already; the refusal stands even if its record cannot be written.
        deps.logger.error({ err: error }, 'refresh token reuse not audited');
      }
    }
  }

  /**
   * A client revoked one of its tokens: oidc-provider has revoked every token of the grant (and,
   * for a refresh token, the grant). Its MCP sessions and running calls end on every replica before
   * their next upstream request, as for a revoked consent; the revocation is on the trail.
   */
  async function endRevoked(ctx: KoaContextWithOIDC): Promise<void> {
    const { entities } = ctx.oidc;
    const token = entities.AccessToken ?? entities.RefreshToken;
    // Another client's token is left alone (allowedPolicy): nothing was revoked then.
    if (ctx.status !== 200 || !token?.grantId || token.clientId !== entities.Client?.clientId) return;
    const account = parseAccountId(token.accountId);
    if (!account) return;
    const tokenId = grantTokenId(token.grantId);
    await deps.onGrantRevoked(account.tenantId, account.identifier, tokenId);
    try {
      await deps.audit(account.tenantId, {
        action: 'mcp_oauth.token_revoked',
        outcome: 'success',
        identifier: account.identifier,
        caller: oauthCaller({
          grantId: token.grantId,
          clientName: entities.Client?.clientName ?? null,
          ip: ctx.ip,
        }),
      });
    } catch (error) {
      // Revoked already; the answer stands even if its record cannot be written.
      deps.logger.error({ err: error }, 'MCP token revocation not audited');
    }
  }

  return {
    issuer,
    audience,
    async provider(): Promise<Provider> {
      return (await load()).provider;
    },
    /** oidc-provider's own handling of a request (the protocol endpoints). */
    async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
      await (await load()).callback(request, response);
    },

    /**
     * An OAuth access token as an MCP session of the same shape as a minted token's. Null
     * for an unknown, expired, revoked or other-audience token.
     */
    async authenticate(token: string): Promise<McpSession | null> {
      if (token.length > 200) return null;
      const { provider } = await load();
      const accessToken = await provider.AccessToken.find(token);
      if (!accessToken?.grantId) return null;
      const audiences = Array.isArray(accessToken.aud) ? accessToken.aud : [accessToken.aud];
      if (!audiences.includes(audience)) return null;
      const account = parseAccountId(accessToken.accountId);
      if (!account) return null;
      const clientName = (accessToken.extra as { client_name?: unknown } | undefined)?.client_name;
      return {
        tokenId: grantTokenId(accessToken.grantId),
        clientName: typeof clientName === 'string' ? clientName : null,
        clientVersion: null,
        tenantId: account.tenantId,
        identifier: account.identifier,
        connectionNames: null,
        expiresAt: new Date((accessToken.exp ?? 0) * 1000),
      };
    },

    async rememberConsent(
      record: Omit<ConsentRecord, 'accountId'> & { tenantId: string; identifier: string },
    ) {
      const { tenantId, identifier, ...rest } = record;
      await consents.put(
        record.grantId,
        { ...rest, accountId: accountIdFor(tenantId, identifier) },
        options.refreshTokenTtlSeconds,
      );
    },

    /** The remembered consents (grants) of a tenant, optionally of one identifier. */
    async listConsents(tenantId: string, identifier?: string): Promise<ConsentView[]> {
      let query = db
        .selectFrom('oauth_artifacts as g')
        .leftJoin('oauth_artifacts as c', (join) =>
          join.onRef('c.grant_id', '=', 'g.id').on('c.model', '=', 'Consent'),
        )
        .select([
          'g.id',
          'g.identifier',
          'g.client_id',
          'g.created_at',
          'g.expires_at',
          'c.payload as consent',
        ])
        .where('g.model', '=', 'Grant')
        .where('g.tenant_id', '=', tenantId)
        .where(sql<boolean>`(g.expires_at is null or g.expires_at > now())`)
        .orderBy('g.created_at', 'desc')
        .limit(500);
      if (identifier !== undefined) query = query.where('g.identifier', '=', identifier);
      const rows = await query.execute();
      return rows.map((row) => {
        const consent = row.consent as ConsentRecord | null;
        return {
          id: grantTokenId(row.id),
          identifier: row.identifier ?? '',
          clientId: row.client_id ?? '',
          clientName: consent?.clientName ?? null,
          redirectHost: consent?.redirectHost ?? null,
          createdAt: row.created_at,
          expiresAt: row.expires_at,
        };
      });
    },

    /** Revokes a consent: the grant and every code and token issued under it. Null if unknown. */
    async revokeConsent(tenantId: string, id: string): Promise<{ identifier: string } | null> {
      const grantId = grantIdOf(id);
      if (!grantId) return null;
      const grant = await db
        .selectFrom('oauth_artifacts')
        .select('identifier')
        .where('model', '=', 'Grant')
        .where('id', '=', grantId)
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      if (!grant?.identifier) return null;
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('oauth_artifacts').where('grant_id', '=', grantId).execute();
        await trx
          .deleteFrom('oauth_artifacts')
          .where('model', '=', 'Grant')
          .where('id', '=', grantId)
          .execute();
      });
      await deps.onGrantRevoked(tenantId, grant.identifier, id);
      return { identifier: grant.identifier };
    },
  };
}

export type OAuthServer = ReturnType<typeof createOAuthServer>;
