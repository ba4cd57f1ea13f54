import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import cookie from '@fastify/cookie';
import fastifyStatic from '@fastify/static';
import { AUDIT_OUTCOMES, lifecycleRecord, rowToEvent } from '@warden/audit';
import type { AuditCaller } from '@warden/audit';
import { WardenError, notFound } from '@warden/core';
import type { SsoConfig } from '@warden/vault';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import {
  CONSOLE_CLIENT_NAME,
  authenticateFromConsole,
  isAdminToken,
  tenantAuth,
  tenantOf,
} from '../http/auth.ts';
import { refuseUnstorableText } from '../http/request-contract.ts';
import { adminFingerprint, createConsoleSessions } from './console-sessions.ts';
import type { ConsoleSession } from './console-sessions.ts';
import { createConsoleQueries } from './console-queries.ts';

/** Where `npm start` (scripts/bootstrap.sh) builds the console; never committed. */
export const CONSOLE_DIST = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../console/dist',
);

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const CSRF_HEADER = 'x-csrf-token';
/** Paths a console session may authenticate: the tenant and admin APIs and the console's own. */
export const SESSION_PATHS = /^\/(api\/v1|admin\/v1|console\/api)\//;

/**
 * The console's pages load only their own bundle: no inline script or style, no other origin,
 * no framing. Styles set through the CSSOM (React `style`, the chart) are not affected.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

function setPageHeaders(reply: FastifyReply): void {
  reply
    .header('content-security-policy', CONSOLE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('x-frame-options', 'DENY')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
    .header('cross-origin-resource-policy', 'same-origin');
}

const isoTime = z
  .string()
  .max(100)
  .refine((v) => !Number.isNaN(Date.parse(v)), 'must be an ISO 8601 time, e.g. 2026-01-31T00:00:00Z')
  .transform((v) => new Date(v));

const explorerQuery = z.strictObject({
  from: isoTime.optional(),
  to: isoTime.optional(),
  identifier: z.string().max(256).optional(),
  tool_name: z.string().max(100).optional(),
  outcome: z.enum(AUDIT_OUTCOMES as [string, ...string[]]).optional(),
  kind: z.string().max(50).optional(),
  agent_run_id: z.string().max(200).optional(),
  execution_id: z.string().max(100).optional(),
  snapshot_seq: z.coerce.number().int().min(0).optional(),
  offset: z.coerce.number().int().min(0).max(10_000_000).default(0),
  limit: z.coerce.number().int().min(1).max(1000).default(200),
});

const signIn = z.union([
  z.strictObject({ api_key: z.string().min(1).max(200) }),
  z.strictObject({ admin_token: z.string().min(1).max(1000) }),
]);

/**
 * Why a sign-in through the tenant's SSO ended without a console session; the sign-in page
 * (`/console?sso_error=…`) explains each. `not_admin`: the SSO configuration does not name the
 * identifier in `console_admins`; `refused`: the identity provider or the SSO rules refused the
 * person; `failed`: the identity provider could not be reached or answered wrongly.
 */
export type ConsoleSsoRefusal = 'not_admin' | 'refused' | 'failed';

/** The console's end of a sign-in through the tenant's SSO (the relying party is the OAuth module's). */
export interface ConsoleSsoSignIn {
  /** A session for an identity the tenant's provider vouched for, if it is a named console admin. */
  signIn(
    request: FastifyRequest,
    reply: FastifyReply,
    who: { tenantId: string; identifier: string; config: SsoConfig },
  ): Promise<FastifyReply>;
  /** Back to the sign-in page with the reason; a refusal with a known subject is recorded. */
  refuse(
    request: FastifyRequest,
    reply: FastifyReply,
    tenantId: string,
    reason: ConsoleSsoRefusal,
    refused?: { subject: string | null; message: string },
  ): Promise<FastifyReply>;
}

/**
 * The admin console: its sign-in (sessions in PostgreSQL, an httpOnly SameSite=Strict cookie,
 * anti-forgery tokens on every change), the few read models the pages need beyond the public
 * API, and the built single-page app under a strict CSP. Everything else the pages do goes
 * through the public API itself, which accepts the session in place of the key it was signed
 * in with (`authenticateFromConsole`).
 */
export async function setUpConsole(app: FastifyInstance, container: Container): Promise<ConsoleSsoSignIn> {
  const { config } = container;
  const sessions = createConsoleSessions({ db: container.db.kysely });
  const queries = createConsoleQueries(container.db.kysely);
  const secure = new URL(config.publicUrl).protocol === 'https:';
  // `__Host-` pins the cookie to this host and path / (browsers accept it only with Secure).
  const cookieName = secure ? '__Host-warden_console' : 'warden_console';
  const operatorFingerprint = config.adminToken ? adminFingerprint(config.adminToken) : null;
  const bySession = new WeakMap<FastifyRequest, ConsoleSession>();

  // Parsing only where a session can count, so the other routes (OAuth's own cookies) are untouched.
  await app.register(cookie, { hook: false });

  app.addHook('onRequest', async (request) => {
    if (request.headers.authorization !== undefined) return;
    // A session counts only on the plain spelling of the path.
    const urlPath = request.url.split('?')[0] ?? '/';
    if (!SESSION_PATHS.test(urlPath)) return;
    const secret = app.parseCookie(request.headers.cookie ?? '')[cookieName];
    if (!secret) return;
    const session = await sessions.resolve(secret, operatorFingerprint);
    if (!session) return;
    if (!SAFE_METHODS.has(request.method)) {
      const token = request.headers[CSRF_HEADER];
      if (typeof token !== 'string' || !sessions.verifyCsrf(session, token)) {
        throw new WardenError(
          'forbidden',
          `${CSRF_HEADER}: a change from the console needs the anti-forgery token of its session; reload the page`,
          { field: CSRF_HEADER },
        );
      }
    }
    bySession.set(request, session);
    authenticateFromConsole(
      request,
      session.kind === 'operator' ? 'operator' : { tenantId: session.tenantId, ...session.principal },
    );
  });

  const cookieOptions = {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure,
  };

  function sessionJson(session: ConsoleSession) {
    return {
      kind: session.kind,
      tenant: session.kind === 'tenant' ? { id: session.tenantId, name: session.tenantName } : null,
      /** The identifier of a tenant admin signed in through the tenant's SSO. */
      sso_identifier:
        session.kind === 'tenant' && session.principal.type === 'sso' ? session.principal.id : null,
      expires_at: session.expiresAt.toISOString(),
      csrf_token: sessions.csrfToken(session),
      admin_api: config.adminToken !== null,
    };
  }

  await app.register(async (scope) => {
    const r = scope.withTypeProvider<ZodTypeProvider>();
    r.addHook('preValidation', refuseUnstorableText);

    r.post('/console/api/session', {
      schema: { hide: true, body: signIn },
      handler: async (request, reply) => {
        const body = request.body;
        let created: Awaited<ReturnType<typeof sessions.create>>;
        const client = { ip: request.ip, userAgent: request.headers['user-agent'] ?? null };
        if ('api_key' in body) {
          const caller = await container.tenants.authenticate(body.api_key.trim());
          if (!caller) throw new WardenError('unauthenticated', 'api_key: the API key is unknown or revoked');
          created = await sessions.create({
            kind: 'tenant',
            tenantId: caller.tenantId,
            apiKeyId: caller.apiKeyId,
            adminFingerprint: null,
            ...client,
          });
        } else {
          if (!config.adminToken || !operatorFingerprint) {
            throw new WardenError(
              'unauthenticated',
              'admin_token: the admin API is off; set WARDEN_ADMIN_TOKEN and restart Warden',
              { field: 'admin_token' },
            );
          }
          if (!isAdminToken(config.adminToken, body.admin_token.trim())) {
            throw new WardenError('unauthenticated', 'admin_token: this is not WARDEN_ADMIN_TOKEN', {
              field: 'admin_token',
            });
          }
          created = await sessions.create({
            kind: 'operator',
            tenantId: null,
            apiKeyId: null,
            adminFingerprint: operatorFingerprint,
            ...client,
          });
        }
        const session = await sessions.resolve(created.secret, operatorFingerprint);
        if (!session)
          throw new WardenError('internal', 'a console session was not found right after sign-in');
        reply.setCookie(cookieName, created.secret, { ...cookieOptions, expires: created.expiresAt });
        return reply.code(201).send({ session: sessionJson(session) });
      },
    });

    r.get('/console/api/session', {
      schema: { hide: true },
      handler: async (request) => {
        const session = bySession.get(request);
        if (!session) throw new WardenError('unauthenticated', 'not signed in to the console');
        return { session: sessionJson(session) };
      },
    });

    r.delete('/console/api/session', {
      schema: { hide: true },
      handler: async (request, reply) => {
        const session = bySession.get(request);
        if (session) await sessions.revoke(session.id);
        reply.clearCookie(cookieName, cookieOptions);
        return reply.code(204).send();
      },
    });

    r.all('/console/api/*', { schema: { hide: true } }, async (request) => {
      throw new WardenError('not_found', `no console route ${request.method} ${request.url.split('?')[0]}`);
    });
  });

  await app.register(async (scope) => {
    const r = scope.withTypeProvider<ZodTypeProvider>();
    r.addHook('onRequest', tenantAuth(container.tenants));
    r.addHook('preValidation', refuseUnstorableText);

    r.get('/console/api/overview', {
      schema: { hide: true },
      handler: async (request) => {
        const { tenantId } = tenantOf(request);
        const since = new Date(Date.now() - 24 * 3_600_000);
        const [hours, topIdentities, sinks] = await Promise.all([
          queries.callsPerHour(tenantId, since),
          queries.topIdentities(tenantId, since, 5),
          queries.sinkHealth(tenantId),
        ]);
        return { since: since.toISOString(), hours, top_identities: topIdentities, sink_health: sinks };
      },
    });

    r.get('/console/api/audit/rows', {
      schema: { hide: true, querystring: explorerQuery },
      handler: async (request) => {
        const q = request.query;
        const window = await queries.explorerWindow(
          tenantOf(request).tenantId,
          {
            ...(q.from ? { from: q.from } : {}),
            ...(q.to ? { to: q.to } : {}),
            ...(q.identifier ? { identifier: q.identifier } : {}),
            ...(q.tool_name ? { toolName: q.tool_name } : {}),
            ...(q.outcome ? { outcome: q.outcome } : {}),
            ...(q.kind ? { kind: q.kind } : {}),
            ...(q.agent_run_id ? { agentRunId: q.agent_run_id } : {}),
            ...(q.execution_id ? { executionId: q.execution_id } : {}),
          },
          {
            ...(q.snapshot_seq !== undefined ? { snapshotSeq: q.snapshot_seq } : {}),
            offset: q.offset,
            limit: q.limit,
            withTotal: q.snapshot_seq === undefined,
          },
        );
        return { snapshot_seq: window.snapshotSeq, total: window.total, rows: window.rows };
      },
    });

    r.get('/console/api/audit/events/:id', {
      schema: { hide: true, params: z.object({ id: z.string().max(100) }) },
      handler: async (request) => {
        const row = await container.db.kysely
          .selectFrom('audit_events')
          .selectAll()
          .where('id', '=', request.params.id)
          .where('tenant_id', '=', tenantOf(request).tenantId)
          .executeTakeFirst();
        if (!row) throw notFound('audit event');
        return { event: rowToEvent(row) };
      },
    });
  });

  /** `console.sign_in` on the tenant's trail, by the person the identity provider named. */
  async function auditSsoSignIn(
    request: FastifyRequest,
    tenantId: string,
    event: { subject: string | null; outcome: 'success' | 'refused'; message?: string },
  ): Promise<void> {
    const caller: AuditCaller = {
      type: 'sso',
      id: event.subject,
      client_name: CONSOLE_CLIENT_NAME,
      client_version: null,
      ip: request.ip,
    };
    const { retentionDays } = await container.settings.effective(tenantId);
    await container.audit.append(
      tenantId,
      [
        lifecycleRecord(
          { caller, identifier: event.subject },
          {
            action: 'console.sign_in',
            outcome: event.outcome,
            error: event.message ? { code: 'forbidden', message: event.message } : null,
            details: { method: 'sso' },
          },
        ),
      ],
      { retentionDays },
    );
  }

  const toSignInPage = (reply: FastifyReply, reason: ConsoleSsoRefusal | null) =>
    reply
      .code(303)
      .header('cache-control', 'no-store')
      .redirect(reason ? `/console?sso_error=${reason}` : '/console', 303);

  const refuse: ConsoleSsoSignIn['refuse'] = async (request, reply, tenantId, reason, refused) => {
    if (refused) {
      await auditSsoSignIn(request, tenantId, {
        subject: refused.subject,
        outcome: 'refused',
        message: refused.message,
      });
    }
    return toSignInPage(reply, reason);
  };

  const signInWithSso: ConsoleSsoSignIn['signIn'] = async (request, reply, who) => {
    // Safe default: an SSO configuration that names no console admins lets no one in.
    if (!who.config.consoleAdmins.includes(who.identifier)) {
      return refuse(request, reply, who.tenantId, 'not_admin', {
        subject: who.identifier,
        message: `${who.identifier} is not a console admin of this tenant (console_admins of its SSO configuration)`,
      });
    }
    const created = await sessions.create({
      kind: 'tenant',
      tenantId: who.tenantId,
      apiKeyId: null,
      sso: { identifier: who.identifier, configUpdatedAt: who.config.updatedAt },
      adminFingerprint: null,
      ip: request.ip,
      userAgent: request.headers['user-agent'] ?? null,
    });
    await auditSsoSignIn(request, who.tenantId, { subject: who.identifier, outcome: 'success' });
    reply.setCookie(cookieName, created.secret, { ...cookieOptions, expires: created.expiresAt });
    return toSignInPage(reply, null);
  };

  // The single-page app: hashed assets cached for good, every other /console path gets the page.
  const assets = path.join(CONSOLE_DIST, 'assets');
  let page: string | null = null;
  if (existsSync(assets)) {
    await app.register(fastifyStatic, {
      root: assets,
      prefix: '/console/assets/',
      decorateReply: false,
      index: false,
      immutable: true,
      maxAge: '365d',
      setHeaders: (res) => {
        res.header('x-content-type-options', 'nosniff');
        res.header('cross-origin-resource-policy', 'same-origin');
      },
    });
  }
  const servePage = async (_request: FastifyRequest, reply: FastifyReply) => {
    setPageHeaders(reply);
    reply.header('cache-control', 'no-store');
    const indexFile = path.join(CONSOLE_DIST, 'index.html');
    page ??= existsSync(indexFile) ? readFileSync(indexFile, 'utf8') : null;
    if (page === null) {
      return reply
        .code(503)
        .type('text/plain; charset=utf-8')
        .send(
          'The console is not built. `npm start` builds it; otherwise run `npm run build -w services/console` and restart Warden.',
        );
    }
    return reply.type('text/html; charset=utf-8').send(page);
  };
  app.get('/console', { schema: { hide: true } }, servePage);
  app.get('/console/*', { schema: { hide: true } }, servePage);
  return { signIn: signInWithSso, refuse };
}
