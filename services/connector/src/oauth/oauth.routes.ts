import { createHash, randomBytes } from 'node:crypto';
import type { Logger } from '@warden/core';
import type { Database } from '@warden/db';
import type { Kysely } from 'kysely';
import { WardenError, isWardenError } from '@warden/core';
import type { ScopedToolsService, PolicyStore } from '@warden/tools';
import { describePolicy } from '@warden/tools';
import type { ConnectedAccountService, SsoConfigService, TenantService } from '@warden/vault';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { InteractionResults } from 'oidc-provider';
import { z } from 'zod';
import type { ConsoleSsoSignIn } from '../console/console.routes.ts';
import { refuseUnstorableText } from '../http/request-contract.ts';
import { accountIdFor, createRecordStore, parseAccountId } from './oauth-artifacts.ts';
import type { OAuthAudit } from './oauth-audit.ts';
import { grantTokenId, oauthCaller } from './oauth-audit.ts';
import type { LoginLinks } from './login-links.ts';
import {
  consentPage,
  continuePage,
  errorPage,
  loginLinkPage,
  loginPage,
  signedInPage,
} from './oauth-pages.ts';
import type { Page } from './oauth-pages.ts';
import { AUTHORIZATION_PATH, INTERACTION_TTL_SECONDS, MCP_SCOPE, REGISTRATION_PATH } from './oauth-server.ts';
import type { OAuthServer } from './oauth-server.ts';
import type { AddressLimit } from './address-limit.ts';
import { SsoRefusal } from './sso.ts';
import type { SsoPending, SsoRelyingParty } from './sso.ts';

export interface OAuthRouteDeps {
  readonly server: OAuthServer;
  readonly registrationLimit: Pick<AddressLimit, 'spec' | 'take'>;
  /** SSO sign-ins started per client address (each stores a pending sign-in for its lifetime). */
  readonly signInLimit: Pick<AddressLimit, 'admit'>;
  /** Authorization requests per client address (each stores a sign-in interaction); same spec. */
  readonly authorizationLimit: Pick<AddressLimit, 'spec' | 'take'>;
  readonly db: Kysely<Database>;
  readonly publicUrl: string;
  readonly tenants: Pick<TenantService, 'get'>;
  readonly accounts: Pick<ConnectedAccountService, 'list'>;
  readonly policies: Pick<PolicyStore, 'effective'>;
  readonly scopedTools: Pick<ScopedToolsService, 'list'>;
  readonly ssoConfigs: Pick<SsoConfigService, 'tenantForDomain'>;
  readonly sso: SsoRelyingParty;
  readonly loginLinks: LoginLinks;
  readonly audit: OAuthAudit;
  /** Where a sign-in to the admin console through the tenant's SSO ends. */
  readonly console: ConsoleSsoSignIn;
  readonly logger: Logger;
}

/** Cookies of the sign-in pages (signed with the server's shared cookie keys). */
const PENDING_INTERACTION_COOKIE = 'warden_pending_interaction';
const SSO_BINDING_COOKIE = 'warden_sso_binding';
const SIGNED_IN_COOKIE = 'warden_signed_in';
const SSO_TTL_SECONDS = 600;
const SIGNED_IN_TTL_SECONDS = 300;

interface SignedIn {
  readonly tenantId: string;
  readonly identifier: string;
  readonly method: 'sso' | 'login_link';
  readonly exp: number;
}

function sha256(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('base64url');
}

function formBody(request: FastifyRequest): Record<string, string> {
  const body = request.body;
  return body && typeof body === 'object' ? (body as Record<string, string>) : {};
}

/**
 * The endpoint oidc-provider will route this request to, of those limited per address: its
 * router folds case and ignores one trailing slash (`/oauth/REGISTER/` is registration too), and
 * the path ends at a query or at a fragment sent in the request target.
 */
function limitedEndpoint(request: FastifyRequest): 'registration' | 'authorization' | null {
  const path = (request.raw.url ?? '').split(/[?#]/)[0] ?? '';
  const trimmed = (path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path).toUpperCase();
  if (request.method === 'POST' && trimmed === REGISTRATION_PATH.toUpperCase()) return 'registration';
  if ((request.method === 'GET' || request.method === 'POST') && trimmed === AUTHORIZATION_PATH.toUpperCase())
    return 'authorization';
  return null;
}

/** Origins a page's forms may end up at: the client's redirect URI and, on the login page, any IdP. */
function redirectOrigin(redirectUri: unknown): string | null {
  const url = typeof redirectUri === 'string' ? URL.parse(redirectUri) : null;
  return url ? url.origin : null;
}

export async function oauthRoutes(app: FastifyInstance, deps: OAuthRouteDeps): Promise<void> {
  const { server, publicUrl } = deps;
  const base = new URL(publicUrl);
  const secureCookies = base.protocol === 'https:';
  const ssoPending = createRecordStore<SsoPending>(deps.db, 'SsoLogin');

  /** oidc-provider builds every URL from these, so they always name PUBLIC_URL. */
  function setForwarded(request: FastifyRequest): void {
    request.raw.headers['x-forwarded-host'] = base.host;
    request.raw.headers['x-forwarded-proto'] = base.protocol.slice(0, -1);
    request.raw.headers['x-forwarded-for'] = request.ip;
  }

  async function forward(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const endpoint = limitedEndpoint(request);
    if (endpoint === 'authorization') {
      // Each authorization request stores a sign-in interaction: limited like the SSO starts.
      const taken = await deps.authorizationLimit.take(request.ip);
      if (!taken.allowed) {
        const page = errorPage(
          'Too many sign-ins',
          `Too many sign-ins were started from your network; try again in ${taken.retryAfterSeconds} s.`,
          429,
        );
        return send(reply.header('retry-after', String(taken.retryAfterSeconds)), page);
      }
    }
    if (endpoint === 'registration') {
      // `request.ip`: the client's address, from X-Forwarded-For only with TRUST_PROXY.
      const taken = await deps.registrationLimit.take(request.ip);
      if (!taken.allowed) {
        return reply
          .code(429)
          .header('retry-after', String(taken.retryAfterSeconds))
          .header('cache-control', 'no-store')
          .send({
            error: 'rate_limited',
            error_description: taken.message('client registrations'),
          });
      }
    }
    setForwarded(request);
    // Built before the reply is taken over, so a failure still gets the usual error answer.
    await server.provider();
    reply.hijack();
    reply.raw.setHeader('x-request-id', request.id);
    await server.handle(request.raw, reply.raw);
    return reply;
  }

  async function cookies(request: FastifyRequest, reply: FastifyReply) {
    setForwarded(request);
    return (await server.provider()).createContext(request.raw, reply.raw).cookies;
  }

  async function setCookie(
    request: FastifyRequest,
    reply: FastifyReply,
    name: string,
    value: string | null,
    options: { path: string; maxAgeSeconds: number },
  ): Promise<void> {
    (await cookies(request, reply)).set(name, value, {
      signed: true,
      httpOnly: true,
      sameSite: 'lax',
      secure: secureCookies,
      path: options.path,
      maxAge: options.maxAgeSeconds * 1000,
      overwrite: true,
    });
  }

  async function getCookie(request: FastifyRequest, reply: FastifyReply, name: string) {
    return (await cookies(request, reply)).get(name, { signed: true });
  }

  function send(reply: FastifyReply, rendered: Page): FastifyReply {
    return reply.code(rendered.status).headers(rendered.headers).send(rendered.body);
  }

  /** Records the result of an interaction and sends the browser on to oidc-provider. */
  async function finishInteraction(
    reply: FastifyReply,
    uid: string,
    result: InteractionResults,
    merge: boolean,
  ): Promise<FastifyReply> {
    const interaction = await (await server.provider()).Interaction.find(uid);
    if (!interaction) {
      return send(
        reply,
        errorPage('Sign-in expired', 'This sign-in took too long. Start again from your MCP client.'),
      );
    }
    interaction.result = merge ? { ...interaction.lastSubmission, ...result } : result;
    await interaction.save(Math.max(1, (interaction.exp ?? 0) - Math.floor(Date.now() / 1000)));
    return reply.code(303).header('cache-control', 'no-store').redirect(interaction.returnTo, 303);
  }

  async function clientNameOf(clientId: string): Promise<string> {
    const client = await (await server.provider()).Client.find(clientId);
    return client?.clientName ?? clientId;
  }

  /** Completes the login step for an identity that proved itself (SSO or a login link). */
  async function completeLogin(
    request: FastifyRequest,
    reply: FastifyReply,
    uid: string,
    signedIn: { tenantId: string; identifier: string; method: SignedIn['method'] },
  ): Promise<FastifyReply> {
    const interaction = await (await server.provider()).Interaction.find(uid);
    const clientId = typeof interaction?.params.client_id === 'string' ? interaction.params.client_id : null;
    await deps.audit(signedIn.tenantId, {
      action: 'mcp_oauth.sign_in',
      outcome: 'success',
      identifier: signedIn.identifier,
      caller: oauthCaller({ clientName: clientId ? await clientNameOf(clientId) : null, ip: request.ip }),
    });
    return finishInteraction(
      reply,
      uid,
      { login: { accountId: accountIdFor(signedIn.tenantId, signedIn.identifier), amr: [signedIn.method] } },
      false,
    );
  }

  /** The engineer may not sign in: the client gets `access_denied` at its redirect URI. */
  async function refuseLogin(
    request: FastifyRequest,
    reply: FastifyReply,
    uid: string,
    reason: string,
    who?: { tenantId: string; identifier: string },
  ): Promise<FastifyReply> {
    if (who) {
      await deps.audit(who.tenantId, {
        action: 'mcp_oauth.sign_in',
        outcome: 'refused',
        identifier: who.identifier,
        caller: oauthCaller({ clientName: null, ip: request.ip }),
        error: { code: 'access_denied', message: reason },
      });
    }
    return finishInteraction(reply, uid, { error: 'access_denied', error_description: reason }, false);
  }

  /** The interaction this browser holds (its interaction cookie), or an error page. */
  async function interactionOf(request: FastifyRequest, reply: FastifyReply) {
    const { uid } = request.params as { uid: string };
    try {
      const details = await (await server.provider()).interactionDetails(request.raw, reply.raw);
      if (details.uid === uid) return details;
    } catch {
      // Falls through to the page below.
    }
    send(
      reply,
      errorPage(
        'Sign-in not found',
        'This sign-in has expired or was started in another browser. Start again from your MCP client.',
      ),
    );
    return null;
  }

  /**
   * Sends the browser to the tenant's identity provider (PKCE, state, nonce), for an MCP
   * authorization (`interactionUid`) or a console sign-in (null). What the callback needs stays
   * server-side under the state; the browser gets a binding cookie so only it can finish.
   */
  async function startSso(
    request: FastifyRequest,
    reply: FastifyReply,
    sign: { tenantId: string; email: string; interactionUid: string | null },
  ): Promise<string> {
    // `request.ip`: the client's address, from X-Forwarded-For only with TRUST_PROXY.
    await deps.signInLimit.admit(request.ip, 'sign-ins started');
    const state = randomBytes(32).toString('base64url');
    const binding = randomBytes(32).toString('base64url');
    const started = await deps.sso.start(sign.tenantId, { loginHint: sign.email, state });
    await ssoPending.put(
      state,
      {
        tenantId: sign.tenantId,
        interactionUid: sign.interactionUid,
        codeVerifier: started.codeVerifier,
        nonce: started.nonce,
        bindingHash: sha256(binding),
      },
      SSO_TTL_SECONDS,
    );
    await setCookie(request, reply, SSO_BINDING_COOKIE, binding, {
      path: '/oauth/sso',
      maxAgeSeconds: SSO_TTL_SECONDS,
    });
    return started.url;
  }

  /**
   * The one tenant whose SSO takes this email (a domain belongs to the one tenant that proved
   * it, so nobody picks another's), or a message for the person.
   */
  async function tenantForEmail(email: string): Promise<{ tenantId: string; tenantName: string } | string> {
    const at = email.lastIndexOf('@');
    if (at <= 0) return 'Enter your work email address.';
    try {
      const tenant = await deps.ssoConfigs.tenantForDomain(email.slice(at + 1));
      return tenant ?? `No organization signs in engineers with ${email.slice(at)} email addresses here.`;
    } catch (error) {
      if (isWardenError(error) && error.code === 'invalid_request') return 'Enter your work email address.';
      throw error;
    }
  }

  /** The callback of a console sign-in: a session if the tenant names the identity a console admin. */
  async function finishConsoleSignIn(
    request: FastifyRequest,
    reply: FastifyReply,
    pending: SsoPending,
    rawQuery: string,
    state: string,
  ): Promise<FastifyReply> {
    let signedIn: Awaited<ReturnType<SsoRelyingParty['finish']>>;
    try {
      signedIn = await deps.sso.finish(pending, rawQuery, state);
    } catch (error) {
      if (error instanceof SsoRefusal) {
        return deps.console.refuse(request, reply, pending.tenantId, 'refused', {
          subject: error.subject,
          message: error.message,
        });
      }
      deps.logger.warn({ err: error, tenant_id: pending.tenantId }, 'SSO sign-in to the console failed');
      return deps.console.refuse(request, reply, pending.tenantId, 'failed');
    }
    return deps.console.signIn(request, reply, {
      tenantId: pending.tenantId,
      identifier: signedIn.identifier,
      config: signedIn.config,
    });
  }

  // --- Console sign-in through the tenant's SSO: the console page posts the work email here. ---
  await app.register(async (scope) => {
    const r = scope.withTypeProvider<ZodTypeProvider>();
    r.addHook('preValidation', refuseUnstorableText);
    r.post('/console/api/sso', {
      schema: {
        hide: true,
        body: z.strictObject({ email: z.string().max(320) }),
      },
      handler: async (request, reply) => {
        const email = request.body.email.trim();
        const chosen = await tenantForEmail(email);
        if (typeof chosen === 'string') {
          throw new WardenError('invalid_request', `email: ${chosen}`, { field: 'email' });
        }
        const url = await startSso(request, reply, {
          tenantId: chosen.tenantId,
          email,
          interactionUid: null,
        });
        reply.header('cache-control', 'no-store');
        return { redirect_url: url };
      },
    });
  });

  // --- The OAuth protocol itself: oidc-provider, with the raw request body untouched. ---
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    for (const url of [
      '/oauth/*',
      '/.well-known/oauth-authorization-server',
      '/.well-known/openid-configuration',
    ]) {
      scope.route({
        method: ['GET', 'POST', 'OPTIONS', 'HEAD'],
        url,
        schema: { hide: true },
        handler: forward,
      });
    }
  });

  // --- Protected resource metadata (RFC 9728) for /mcp. ---
  const resourceMetadata = {
    resource: server.audience,
    authorization_servers: [server.issuer],
    scopes_supported: [MCP_SCOPE],
    bearer_methods_supported: ['header'],
    resource_name: 'Warden: the Cloudflare API for your agents',
    resource_documentation: `${publicUrl}/docs`,
  };
  for (const url of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
    app.get(url, { schema: { hide: true } }, async (_request, reply) =>
      reply
        .header('access-control-allow-origin', '*')
        .header('cache-control', 'max-age=300')
        .send(resourceMetadata),
    );
  }

  // --- The sign-in pages. ---
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 16 * 1024 },
      (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    /**
     * The sign-in forms post only from Warden's own pages. A browser says where a post comes from
     * (`Sec-Fetch-Site`; `Origin`, which these pages' no-referrer policy turns into "null"): a
     * form another site submits (login CSRF: signing the victim's browser in as the attacker
     * through the attacker's login link) is refused before it is read.
     */
    scope.addHook('preHandler', async (request, reply) => {
      const path = request.url.split('?')[0] ?? '';
      if (request.method !== 'POST' || !(path === '/oauth/link' || path.startsWith('/oauth/interaction/'))) {
        return;
      }
      const site = request.headers['sec-fetch-site'];
      const origin = request.headers.origin;
      const crossSite = site !== undefined && site !== 'same-origin' && site !== 'none';
      const foreignOrigin = origin !== undefined && origin !== 'null' && origin !== base.origin;
      if (crossSite || foreignOrigin) {
        return send(
          reply,
          errorPage(
            'Sign-in refused',
            'This form was sent from another site. Open the sign-in from your MCP client or your sign-in link, in this browser.',
            403,
          ),
        );
      }
    });

    scope.get('/oauth/interaction/:uid', { schema: { hide: true } }, async (request, reply) => {
      const details = await interactionOf(request, reply);
      if (!details) return reply;
      const clientId = String(details.params.client_id);
      const clientName = await clientNameOf(clientId);
      const clientOrigin = redirectOrigin(details.params.redirect_uri);
      const targets = clientOrigin ? [clientOrigin] : [];

      if (details.prompt.name === 'login') {
        const signedIn = await readSignedIn(request, reply);
        if (signedIn) {
          await setCookie(request, reply, SIGNED_IN_COOKIE, null, { path: '/oauth', maxAgeSeconds: 0 });
          return completeLogin(request, reply, details.uid, signedIn);
        }
        await setCookie(request, reply, PENDING_INTERACTION_COOKIE, details.uid, {
          path: '/oauth',
          maxAgeSeconds: INTERACTION_TTL_SECONDS,
        });
        return send(reply, loginPage({ uid: details.uid, clientName, formTargets: targets }));
      }
      if (details.prompt.name === 'consent') {
        const account = parseAccountId(details.session?.accountId);
        if (!account) return send(reply, errorPage('Sign-in failed', 'The sign-in has no identity.'));
        return send(
          reply,
          await consentView(details.uid, account, {
            clientId,
            clientName,
            redirectUri: details.params.redirect_uri,
            targets,
          }),
        );
      }
      return send(reply, errorPage('Sign-in failed', `Unexpected step "${details.prompt.name}".`));
    });

    scope.post('/oauth/interaction/:uid/sso', { schema: { hide: true } }, async (request, reply) => {
      const details = await interactionOf(request, reply);
      if (!details) return reply;
      const form = formBody(request);
      const email = (form.email ?? '').trim();
      const clientName = await clientNameOf(String(details.params.client_id));
      const clientOrigin = redirectOrigin(details.params.redirect_uri);
      const targets = clientOrigin ? [clientOrigin] : [];
      const again = (error: string) =>
        send(reply, loginPage({ uid: details.uid, clientName, email, error, formTargets: targets }));

      const chosen = await tenantForEmail(email);
      if (typeof chosen === 'string') return again(chosen);

      let url: string;
      try {
        url = await startSso(request, reply, {
          tenantId: chosen.tenantId,
          email,
          interactionUid: details.uid,
        });
      } catch (error) {
        if (isWardenError(error) && error.code === 'rate_limited') {
          return again(
            `Too many sign-ins were started from your network; try again in ${error.details.retryAfterSeconds ?? 60} s.`,
          );
        }
        deps.logger.warn({ err: error, tenant_id: chosen.tenantId }, 'SSO sign-in could not start');
        return again('Your organization’s identity provider cannot be reached right now. Try again later.');
      }
      // A page that refreshes to the IdP rather than a redirect: the login page's form-action
      // then need not allow the IdP's origin (or every https: origin).
      return send(reply, continuePage(url));
    });

    scope.get('/oauth/sso/callback', { schema: { hide: true } }, async (request, reply) => {
      const query = request.query as Record<string, unknown>;
      const state = typeof query.state === 'string' ? query.state : null;
      const binding = await getCookie(request, reply, SSO_BINDING_COOKIE);
      // Used up only by the browser that started it: a callback URL presented by another
      // browser (leaked, phished, replayed) must not spoil the real sign-in.
      const started = state ? await ssoPending.peek(state) : null;
      const ours = started !== null && typeof binding === 'string' && sha256(binding) === started.bindingHash;
      const pending = state && ours ? await ssoPending.take(state) : null;
      if (!state || !pending || !binding || sha256(binding) !== pending.bindingHash) {
        return send(
          reply,
          errorPage(
            'Sign-in expired',
            'This single sign-on answer does not belong to a sign-in started in this browser, or it was already used. Start again from your MCP client or the Warden console.',
          ),
        );
      }
      await setCookie(request, reply, SSO_BINDING_COOKIE, null, { path: '/oauth/sso', maxAgeSeconds: 0 });
      const rawQuery = request.url.slice(request.url.indexOf('?') + 1);
      if (pending.interactionUid === null)
        return finishConsoleSignIn(request, reply, pending, rawQuery, state);
      try {
        const { identifier } = await deps.sso.finish(pending, rawQuery, state);
        return completeLogin(request, reply, pending.interactionUid, {
          tenantId: pending.tenantId,
          identifier,
          method: 'sso',
        });
      } catch (error) {
        if (error instanceof SsoRefusal) {
          return refuseLogin(request, reply, pending.interactionUid, error.message, {
            tenantId: pending.tenantId,
            identifier: error.subject ?? '(unknown)',
          });
        }
        deps.logger.warn({ err: error, tenant_id: pending.tenantId }, 'SSO sign-in failed');
        return send(
          reply,
          errorPage(
            'Sign-in failed',
            'Your organization’s identity provider could not complete the sign-in.',
            502,
          ),
        );
      }
    });

    scope.post('/oauth/interaction/:uid/consent', { schema: { hide: true } }, async (request, reply) => {
      const details = await interactionOf(request, reply);
      if (!details) return reply;
      const account = parseAccountId(details.session?.accountId);
      if (details.prompt.name !== 'consent' || !account || !details.session?.accountId) {
        return send(reply, errorPage('Sign-in failed', 'There is nothing to consent to in this sign-in.'));
      }
      const clientId = String(details.params.client_id);
      const grant = details.grantId
        ? await (await server.provider()).Grant.find(details.grantId)
        : new (await server.provider()).Grant({ accountId: details.session.accountId, clientId });
      if (!grant)
        return send(reply, errorPage('Sign-in failed', 'The earlier consent was revoked meanwhile.'));
      const missing = details.prompt.details as {
        missingOIDCScope?: string[];
        missingOIDCClaims?: string[];
        missingResourceScopes?: Record<string, string[]>;
      };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [resource, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(resource, scopes.join(' '));
      }
      const grantId = await grant.save();
      const clientName = await clientNameOf(clientId);
      await server.rememberConsent({
        grantId,
        tenantId: account.tenantId,
        identifier: account.identifier,
        clientId,
        clientName,
        redirectHost: URL.parse(String(details.params.redirect_uri))?.host ?? '',
      });
      await deps.audit(account.tenantId, {
        action: 'mcp_oauth.consent',
        outcome: 'success',
        identifier: account.identifier,
        caller: oauthCaller({ grantId, clientName, ip: request.ip }),
      });
      return finishInteraction(reply, details.uid, { consent: { grantId } }, true);
    });

    scope.post('/oauth/interaction/:uid/abort', { schema: { hide: true } }, async (request, reply) => {
      const details = await interactionOf(request, reply);
      if (!details) return reply;
      const account = parseAccountId(details.session?.accountId);
      if (account) {
        await deps.audit(account.tenantId, {
          action: 'mcp_oauth.consent',
          outcome: 'refused',
          identifier: account.identifier,
          caller: oauthCaller({
            clientName: await clientNameOf(String(details.params.client_id)),
            ip: request.ip,
          }),
          error: { code: 'access_denied', message: 'the engineer denied access' },
        });
      }
      return finishInteraction(
        reply,
        details.uid,
        { error: 'access_denied', error_description: 'the sign-in was cancelled' },
        false,
      );
    });

    // --- Login links (the tenant's backend vouches for an identifier). ---
    const linkRefused = 'This sign-in link has expired or was already used. Ask your app for a new one.';

    /** Sends an unusable link's browser back to its client with `access_denied`, or shows the reason. */
    async function refuseLink(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
      const uid = await getCookie(request, reply, PENDING_INTERACTION_COOKIE);
      if (uid && (await (await server.provider()).Interaction.find(uid))) {
        await setCookie(request, reply, PENDING_INTERACTION_COOKIE, null, {
          path: '/oauth',
          maxAgeSeconds: 0,
        });
        return refuseLogin(request, reply, uid, linkRefused);
      }
      return send(reply, errorPage('Sign-in link not valid', linkRefused));
    }

    scope.get('/oauth/link', { schema: { hide: true } }, async (request, reply) => {
      const token = (request.query as Record<string, unknown>).token;
      const link = typeof token === 'string' ? await deps.loginLinks.peek(token) : null;
      if (typeof token !== 'string' || !link) return refuseLink(request, reply);
      const tenant = await deps.tenants.get(link.tenantId);
      // A page, not a sign-in: link previews and scanners fetch links too, and must not use them up.
      return send(reply, loginLinkPage({ token, identifier: link.identifier, tenantName: tenant.name }));
    });

    scope.post('/oauth/link', { schema: { hide: true } }, async (request, reply) => {
      const token = formBody(request).token;
      const link = token ? await deps.loginLinks.take(token) : null;
      if (!link) return refuseLink(request, reply);
      const uid = await getCookie(request, reply, PENDING_INTERACTION_COOKIE);
      const interaction = uid ? await (await server.provider()).Interaction.find(uid) : undefined;
      if (uid && interaction) {
        await setCookie(request, reply, PENDING_INTERACTION_COOKIE, null, {
          path: '/oauth',
          maxAgeSeconds: 0,
        });
        return completeLogin(request, reply, uid, { ...link, method: 'login_link' });
      }
      const signedIn: SignedIn = {
        tenantId: link.tenantId,
        identifier: link.identifier,
        method: 'login_link',
        exp: Math.floor(Date.now() / 1000) + SIGNED_IN_TTL_SECONDS,
      };
      await setCookie(
        request,
        reply,
        SIGNED_IN_COOKIE,
        Buffer.from(JSON.stringify(signedIn)).toString('base64url'),
        {
          path: '/oauth',
          maxAgeSeconds: SIGNED_IN_TTL_SECONDS,
        },
      );
      return send(reply, signedInPage(link.identifier, SIGNED_IN_TTL_SECONDS / 60));
    });
  });

  async function readSignedIn(request: FastifyRequest, reply: FastifyReply): Promise<SignedIn | null> {
    const raw = await await getCookie(request, reply, SIGNED_IN_COOKIE);
    if (!raw) return null;
    try {
      const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as SignedIn;
      return value.exp > Date.now() / 1000 ? value : null;
    } catch {
      return null;
    }
  }

  /** The login page's SSO form ends at an identity provider, which may be anywhere on the web. */
  async function consentView(
    uid: string,
    account: { tenantId: string; identifier: string },
    client: { clientId: string; clientName: string; redirectUri: unknown; targets: readonly string[] },
  ): Promise<Page> {
    const caller = { tenantId: account.tenantId, type: 'mcp_token' as const, id: grantTokenId('consent') };
    const [tenant, accounts, scoped, policy] = await Promise.all([
      deps.tenants.get(account.tenantId),
      deps.accounts.list(account.tenantId, { identifier: account.identifier, pageSize: 100 }),
      deps.scopedTools.list(caller, { identifier: account.identifier, pageSize: 100 }),
      deps.policies.effective(account.tenantId, account.identifier),
    ]);
    const tools = new Map<string, string>();
    for (const t of scoped.tools) {
      tools.set(t.definition.name, t.definition.description.split('\n')[0] ?? '');
    }
    const policyNote = describePolicy(policy.tenant, policy.identity);
    return consentPage({
      uid,
      tenantName: tenant.name,
      identifier: account.identifier,
      clientName: client.clientName,
      clientId: client.clientId,
      redirectHost: URL.parse(String(client.redirectUri))?.host ?? '',
      accounts: accounts.items
        .filter((a) => a.status === 'ACTIVE')
        .map((a) => ({
          connectionName: a.connectionName,
          label:
            a.cloudflare.accounts.map((c) => c.name).join(', ') ||
            (a.tokenKind === 'account' ? 'an account-owned token' : 'a user token'),
        })),
      tools: [...tools].map(([name, summary]) => ({ name, summary })),
      policyNote: policyNote ? `Your organization’s policy applies: ${policyNote}.` : null,
      formTargets: client.targets,
    });
  }
}
