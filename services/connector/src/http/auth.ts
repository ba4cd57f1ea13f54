import { createHash, timingSafeEqual } from 'node:crypto';
import { WardenError } from '@warden/core';
import type { AuditCaller } from '@warden/audit';
import type { ActorContext, TenantCaller, TenantService } from '@warden/vault';
import type { FastifyRequest } from 'fastify';

const callers = new WeakMap<FastifyRequest, TenantCaller>();

export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}

/** onRequest for /api/v1: resolves the tenant API key or answers 401. */
export function tenantAuth(tenants: Pick<TenantService, 'authenticate'>) {
  return async (request: FastifyRequest): Promise<void> => {
    const token = bearerToken(request);
    if (!token) {
      throw new WardenError('unauthenticated', 'send the tenant API key as `Authorization: Bearer <key>`');
    }
    const caller = await tenants.authenticate(token);
    if (!caller) throw new WardenError('unauthenticated', 'the API key is unknown or revoked');
    callers.set(request, caller);
  };
}

export function tenantOf(request: FastifyRequest): TenantCaller {
  const caller = callers.get(request);
  if (!caller) throw new WardenError('internal', 'tenant authentication did not run for this route');
  return caller;
}

/** The tenant API key making a change, as lifecycle records name it. */
export function actorOf(request: FastifyRequest): ActorContext {
  const caller = tenantOf(request);
  return {
    tenantId: caller.tenantId,
    actor: { type: 'api_key', id: caller.apiKeyId, client_name: null, client_version: null, ip: request.ip },
  };
}

/** The operator (admin token) making a change. */
export function adminActor(request: FastifyRequest): AuditCaller {
  return { type: 'admin', id: null, client_name: null, client_version: null, ip: request.ip };
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

/** onRequest for /admin/v1: the admin API exists only when WARDEN_ADMIN_TOKEN is set. */
export function adminAuth(adminToken: string | null) {
  const expected = adminToken ? digest(adminToken) : null;
  return async (request: FastifyRequest): Promise<void> => {
    if (!expected) throw adminApiOff();
    const token = bearerToken(request);
    if (!token || !timingSafeEqual(digest(token), expected)) {
      throw new WardenError('unauthenticated', 'send WARDEN_ADMIN_TOKEN as `Authorization: Bearer <token>`');
    }
  };
}
