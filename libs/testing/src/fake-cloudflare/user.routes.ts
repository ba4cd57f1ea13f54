import {
  badRequest,
  couldNotRoute,
  invalidApiToken,
  invalidRequestHeaders,
} from './fake-cloudflare.errors.ts';
import { ok, param } from './fake-cloudflare.router.ts';
import { parseJsonBody } from './request-body.parser.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import { isoSeconds, tokenJson, userJson } from './fake-cloudflare.serializers.ts';
import type { TokenRecord } from './fake-cloudflare.state.ts';

/** `{id, status, expires_on?, not_before?}` and, for an active token, Cloudflare's "valid and active" message. */
export function verifyResult(ctx: RouteContext, token: TokenRecord) {
  const status = ctx.state.tokenStatus(token, ctx.now);
  return ok(
    {
      id: token.id,
      status,
      ...(token.expiresOn ? { expires_on: isoSeconds(token.expiresOn) } : {}),
      ...(token.notBefore ? { not_before: isoSeconds(token.notBefore) } : {}),
    },
    { messages: status === 'active' ? [{ code: 10000, message: 'This API Token is valid and active' }] : [] },
  );
}

function ownedUserToken(ctx: RouteContext): TokenRecord {
  const principal = ctx.principal;
  const token = ctx.state.tokens.get(param(ctx, 'token_id'));
  if (
    principal.kind === 'account_token' ||
    !token ||
    token.owner.kind !== 'user' ||
    token.owner.userId !== principal.user.id
  ) {
    throw couldNotRoute(ctx.path);
  }
  return token;
}

export const userRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/user/tokens/verify',
    fallbackPermissions: [],
    resource: 'none',
    inactiveTokens: true,
    handler: (ctx) => {
      const principal = ctx.principal;
      // Account-owned tokens are unknown to the user endpoint, exactly as on the real API.
      if (principal.kind === 'account_token') throw invalidApiToken();
      if (principal.kind === 'global_api_key') {
        throw invalidRequestHeaders(6111, 'Invalid format for Authorization header');
      }
      return verifyResult(ctx, principal.token);
    },
  },
  {
    method: 'GET',
    path: '/user',
    fallbackPermissions: ['com.cloudflare.api.user.read'],
    resource: 'user',
    handler: (ctx) => {
      const principal = ctx.principal;
      if (principal.kind === 'account_token') throw invalidApiToken();
      return ok(userJson(ctx.state, principal.user));
    },
  },
  {
    method: 'GET',
    path: '/user/tokens/{token_id}',
    fallbackPermissions: ['com.cloudflare.api.token.read'],
    resource: 'user',
    handler: (ctx) => ok(tokenJson(ctx.state, ownedUserToken(ctx))),
  },
  {
    // Creates a user token with the permission keys named in `policies[].permission_groups[].name`
    // (the names `tokenJson` reports) and answers with its `value`, as the real API does once.
    method: 'POST',
    path: '/user/tokens',
    fallbackPermissions: ['com.cloudflare.api.token.create'],
    resource: 'user',
    handler: (ctx) => {
      const principal = ctx.principal;
      if (principal.kind === 'account_token') throw invalidApiToken();
      const body = parseJsonBody(ctx.body) as {
        name?: unknown;
        policies?: Array<{ permission_groups?: Array<{ name?: unknown }> }>;
      };
      if (typeof body.name !== 'string' || body.name === '') throw badRequest(1001, 'name is required');
      const permissions = (body.policies ?? []).flatMap((policy) =>
        (policy.permission_groups ?? []).map((group) => String(group.name)),
      );
      let created: { id: string; value: string };
      try {
        created = ctx.state.createUserToken({ userId: principal.user.id, name: body.name, permissions });
      } catch (error) {
        throw badRequest(1001, (error as Error).message);
      }
      const token = ctx.state.tokens.get(created.id) as TokenRecord;
      return ok({ ...tokenJson(ctx.state, token), value: created.value });
    },
  },
  {
    method: 'DELETE',
    path: '/user/tokens/{token_id}',
    fallbackPermissions: ['com.cloudflare.api.token.delete'],
    resource: 'user',
    handler: (ctx) => {
      const token = ownedUserToken(ctx);
      ctx.state.deleteToken(token.id);
      return ok({ id: token.id });
    },
  },
];
