import { isPrivateHost, publicOnlyLookup } from '@warden/audit';
import { WardenError } from '@warden/core';
import type { SsoConfig, SsoConfigService } from '@warden/vault';
import { validateIdentifier } from '@warden/vault';
import * as oidc from 'openid-client';
import { Agent, fetch as undiciFetch } from 'undici';

/** The engineer signed in at the IdP but may not become an identifier of this tenant. */
export class SsoRefusal extends Error {
  /** Who the IdP said the engineer is, when it said (for the audit trail). */
  readonly subject: string | null;

  constructor(message: string, subject: string | null = null) {
    super(message);
    this.name = 'SsoRefusal';
    this.subject = subject;
  }
}

/** What the callback needs to finish a sign-in the browser started; kept server-side. */
export interface SsoPending {
  readonly tenantId: string;
  /** The MCP authorization's interaction; null for a sign-in to the admin console. */
  readonly interactionUid: string | null;
  readonly codeVerifier: string;
  readonly nonce: string;
  /** SHA-256 of the value in the browser's binding cookie. */
  readonly bindingHash: string;
}

const CONFIG_TTL_MS = 10 * 60_000;
const TIMEOUT_SECONDS = 10;

/**
 * Warden as the relying party of a tenant's OpenID Connect provider (openid-client):
 * authorization code with PKCE, state and nonce; the ID token's claims become the identifier.
 */
export function createSsoRelyingParty(deps: {
  ssoConfigs: SsoConfigService;
  publicUrl: string;
  allowInsecure: boolean;
}) {
  const redirectUri = `${deps.publicUrl}/oauth/sso/callback`;
  // Tenants choose the issuer, so its fetches must not reach Warden's own network.
  const guarded = new Agent({ connect: { lookup: publicOnlyLookup } });
  const idpFetch: oidc.CustomFetch = async (url, options) => {
    if (!deps.allowInsecure && isPrivateHost(new URL(url).hostname)) {
      throw new WardenError('upstream_error', 'the identity provider is on a private network address');
    }
    const response = await undiciFetch(url, {
      ...(options as Parameters<typeof undiciFetch>[1]),
      ...(deps.allowInsecure ? {} : { dispatcher: guarded }),
    });
    return response as unknown as Response;
  };
  const cache = new Map<string, { client: oidc.Configuration; key: string; at: number }>();

  async function discover(
    issuer: string,
    clientId: string,
    clientSecret: string,
  ): Promise<oidc.Configuration> {
    const client = await oidc.discovery(new URL(issuer), clientId, clientSecret, undefined, {
      [oidc.customFetch]: idpFetch,
      timeout: TIMEOUT_SECONDS,
      ...(deps.allowInsecure ? { execute: [oidc.allowInsecureRequests] } : {}),
    });
    // The browser is sent to the authorization endpoint: only an https:// one (http:// where
    // insecure issuers are allowed), never javascript:, data: or another scheme.
    const metadata = client.serverMetadata();
    for (const name of ['authorization_endpoint', 'token_endpoint'] as const) {
      const endpoint = URL.parse(metadata[name] ?? '');
      if (
        !endpoint ||
        !(endpoint.protocol === 'https:' || (deps.allowInsecure && endpoint.protocol === 'http:'))
      )
        throw new Error(`its ${name} is not an https:// URL`);
    }
    return client;
  }

  async function clientFor(tenantId: string): Promise<{ config: SsoConfig; client: oidc.Configuration }> {
    const { config, clientSecret } = await deps.ssoConfigs.open(tenantId);
    const key = `${config.issuer}\u0000${config.clientId}\u0000${config.updatedAt.toISOString()}`;
    const cached = cache.get(tenantId);
    if (cached && cached.key === key && cached.at > Date.now() - CONFIG_TTL_MS) {
      return { config, client: cached.client };
    }
    let client: oidc.Configuration;
    try {
      client = await discover(config.issuer, config.clientId, clientSecret);
    } catch (cause) {
      throw new WardenError(
        'upstream_error',
        'your organization’s identity provider could not be reached',
        {},
        {
          cause,
        },
      );
    }
    cache.set(tenantId, { client, key, at: Date.now() });
    return { config, client };
  }

  return {
    redirectUri,

    /** Fails with a 400 naming `issuer` when the provider's discovery document cannot be used. */
    async verifyIssuer(issuer: string, clientId: string, clientSecret: string): Promise<void> {
      try {
        await discover(issuer, clientId, clientSecret);
      } catch (error) {
        const reason = error instanceof Error ? error.message : 'unreachable';
        throw new WardenError(
          'invalid_request',
          `issuer: OpenID Connect discovery at ${issuer}/.well-known/openid-configuration failed (${reason})`,
          { field: 'issuer' },
        );
      }
    },

    async start(
      tenantId: string,
      input: { loginHint: string; state: string },
    ): Promise<{ url: string; codeVerifier: string; nonce: string }> {
      const { client } = await clientFor(tenantId);
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const nonce = oidc.randomNonce();
      const url = oidc.buildAuthorizationUrl(client, {
        redirect_uri: redirectUri,
        response_type: 'code',
        scope: 'openid email profile',
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state: input.state,
        nonce,
        login_hint: input.loginHint,
      });
      return { url: url.href, codeVerifier, nonce };
    },

    /** Exchanges the code and maps the ID token to an identifier, or refuses the engineer. */
    async finish(
      pending: SsoPending,
      callbackQuery: string,
      state: string,
    ): Promise<{ identifier: string; email: string; config: SsoConfig }> {
      const { config, client } = await clientFor(pending.tenantId);
      let claims: Record<string, unknown> | undefined;
      try {
        const tokens = await oidc.authorizationCodeGrant(client, new URL(`${redirectUri}?${callbackQuery}`), {
          pkceCodeVerifier: pending.codeVerifier,
          expectedState: state,
          expectedNonce: pending.nonce,
          idTokenExpected: true,
        });
        const idToken = tokens.claims();
        // Providers that keep profile claims out of the ID token serve them at userinfo.
        if (idToken && (idToken.email === undefined || idToken[config.identifierClaim] === undefined)) {
          const userinfo = await oidc.fetchUserInfo(client, tokens.access_token, idToken.sub);
          claims = { ...userinfo, ...idToken };
        } else {
          claims = idToken;
        }
      } catch (error) {
        if (error instanceof oidc.AuthorizationResponseError) {
          throw new SsoRefusal(`your identity provider refused the sign-in (${error.error})`);
        }
        throw new WardenError(
          'upstream_error',
          'the sign-in with your identity provider failed',
          {},
          {
            cause: error,
          },
        );
      }
      if (!claims) throw new SsoRefusal('your identity provider returned no ID token');
      const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : null;
      // Only `email_verified: true` counts: an IdP that leaves it out may be passing on an address
      // its user typed (the "nOAuth" class), and the allowed domains would then mean nothing.
      if (!email || claims.email_verified !== true) {
        throw new SsoRefusal('your identity provider did not confirm a verified email address');
      }
      const domain = email.slice(email.lastIndexOf('@') + 1);
      // Only a domain the organization has proven: a listed one still waiting for its DNS record,
      // or proven by another organization, signs nobody in here.
      if (!config.domains.some((d) => d.domain === domain && d.status === 'verified')) {
        throw new SsoRefusal(`${email} is not in a domain this organization allows to sign in`, email);
      }
      const value = claims[config.identifierClaim];
      if (typeof value !== 'string') {
        throw new SsoRefusal(`your identity provider sent no "${config.identifierClaim}" claim`, email);
      }
      try {
        return { identifier: validateIdentifier(value, config.identifierClaim), email, config };
      } catch {
        throw new SsoRefusal(`the "${config.identifierClaim}" claim is not a usable identifier`, email);
      }
    },
  };
}

export type SsoRelyingParty = ReturnType<typeof createSsoRelyingParty>;
