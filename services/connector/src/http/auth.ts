import { createHash, timingSafeEqual } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { AuditCaller } from '@warden/audit';
import type { ActorContext, TenantCaller, TenantService } from '@warden/vault';
import { ssoPrincipalRef } from '@warden/vault';
import type { FastifyRequest } from 'fastify';

/** Who acts for a tenant: one of its API keys, or a console admin signed in through its SSO. */
export interface TenantPrincipal {
  readonly tenantId: string;
  readonly type: 'api_key' | 'sso';
  /** The API key id (`key_…`), or the SSO admin's identifier. */
  readonly id: string;
}

/** How `created_by` columns name a principal: the key id, or `sso:<identifier>`. */
export function principalRef(principal: TenantPrincipal): string {
  return principal.type === 'api_key' ? principal.id : ssoPrincipalRef(principal.id);
}

const callers = new WeakMap<FastifyRequest, TenantPrincipal>();
/** Requests authenticated by an admin console session (`console/console-auth.ts`), not a bearer value. */
const consoleRequests = new WeakSet<FastifyRequest>();
const operatorRequests = new WeakSet<FastifyRequest>();

/**
 * A console session stands in for what it was signed in with: the tenant API key it names, the
 * tenant admin's SSO identity, or the admin token. Runs before the routes' own authentication,
 * which then accepts it.
 */
export function authenticateFromConsole(request: FastifyRequest, caller: TenantPrincipal | 'operator'): void {
  consoleRequests.add(request);
  if (caller === 'operator') operatorRequests.add(request);
  else callers.set(request, caller);
}

export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}

/** onRequest for /api/v1: resolves the tenant API key or answers 401. */
export function tenantAuth(tenants: Pick<TenantService, 'authenticate'>) {
  return async (request: FastifyRequest): Promise<void> => {
    if (callers.has(request)) return;
    const token = bearerToken(request);
    if (!token) {
      throw new WardenError('unauthenticated', 'send the tenant API key as `Authorization: Bearer <key>`');
    }
    const caller: TenantCaller | null = await tenants.authenticate(token);
    if (!caller) throw new WardenError('unauthenticated', 'the API key is unknown or revoked');
    callers.set(request, { tenantId: caller.tenantId, type: 'api_key', id: caller.apiKeyId });
  };
}

export function tenantOf(request: FastifyRequest): TenantPrincipal {
  const caller = callers.get(request);
  if (!caller) throw new WardenError('internal', 'tenant authentication did not run for this route');
  return caller;
}

/** How the audit trail names changes made in the admin console (on the signed-in key's authority). */
export const CONSOLE_CLIENT_NAME = 'warden-console';

/** The tenant API key (or SSO console admin) making a change, as lifecycle records name it. */
export function actorOf(request: FastifyRequest): ActorContext {
  const caller = tenantOf(request);
  return {
    tenantId: caller.tenantId,
    actor: {
      type: caller.type,
      id: caller.id,
      client_name: consoleRequests.has(request) ? CONSOLE_CLIENT_NAME : null,
      client_version: null,
      ip: request.ip,
    },
  };
}

/** The operator (admin token) making a change. */
export function adminActor(request: FastifyRequest): AuditCaller {
  return {
    type: 'admin',
    id: null,
    client_name: consoleRequests.has(request) ? CONSOLE_CLIENT_NAME : null,
    client_version: null,
    ip: request.ip,
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** The admin API's answer while it is off: a 404, as for any unknown route, that says how to turn it on. */
export function adminApiOff(): WardenError {
  return new WardenError(
    'not_found',
    'the admin API is off; set WARDEN_ADMIN_TOKEN (at least 32 characters, e.g. `openssl rand -hex 32`) and restart Warden to turn it on',
  );
}

/** Whether `presented` is the admin token, compared in constant time. */
export function isAdminToken(adminToken: string, presented: string): boolean {
  return timingSafeEqual(digest(presented), digest(adminToken));
}

/** onRequest for /admin/v1: the admin API exists only when WARDEN_ADMIN_TOKEN is set. */
export function adminAuth(adminToken: string | null) {
  return async (request: FastifyRequest): Promise<void> => {
    if (!adminToken) throw adminApiOff();
    if (operatorRequests.has(request)) return;
    const token = bearerToken(request);
    if (!token || !isAdminToken(adminToken, token)) {
      throw new WardenError('unauthenticated', 'send WARDEN_ADMIN_TOKEN as `Authorization: Bearer <token>`');
    }
  };
}
