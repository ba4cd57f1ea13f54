import { seesAccount } from './fake-cloudflare.access.ts';
import { couldNotRoute, invalidApiToken } from './fake-cloudflare.errors.ts';
import { ok, ordered, paginate, param, routeAccount } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import { accountJson, tokenJson } from './fake-cloudflare.serializers.ts';
import type { TokenRecord } from './fake-cloudflare.state.ts';
import { verifyResult } from './user.routes.ts';

const ACCOUNT_PAGES = { defaultPerPage: 20, minPerPage: 5, maxPerPage: 50 };

/** `name` filters as the document's examples show: exact, or `contains:`/`starts_with:`/`ends_with:`. */
export function textFilter(filter: string | null): ((value: string) => boolean) | null {
  if (filter === null || filter === '') return null;
  const lower = filter.toLowerCase();
  const [op, ...rest] = lower.split(':');
  const operand = rest.join(':');
  if (rest.length > 0 && op === 'contains') return (v) => v.toLowerCase().includes(operand);
  if (rest.length > 0 && op === 'starts_with') return (v) => v.toLowerCase().startsWith(operand);
  if (rest.length > 0 && op === 'ends_with') return (v) => v.toLowerCase().endsWith(operand);
  return (v) => v.toLowerCase() === lower;
}

function accountToken(ctx: RouteContext): TokenRecord {
  const account = routeAccount(ctx);
  const token = ctx.state.tokens.get(param(ctx, 'token_id'));
  if (!token || token.owner.kind !== 'account' || token.owner.accountId !== account.id)
    throw couldNotRoute(ctx.path);
  return token;
}

export const accountRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/accounts',
    // The document asks for #organization:read; the list itself shows every account the credential
    // has any permission in (an account-owned token sees its own account), as the real API does.
    fallbackPermissions: ['#organization:read'],
    resource: 'none',
    handler: (ctx) => {
      const byName = textFilter(ctx.query.get('name'));
      const visible = [...ctx.state.accounts.values()].filter(
        (a) => seesAccount(ctx.state, ctx.principal, a) && (!byName || byName(a.name)),
      );
      const { result, resultInfo } = paginate(
        ctx,
        ordered(ctx, visible, (a) => a.name.toLowerCase()),
        ACCOUNT_PAGES,
      );
      return ok(result.map(accountJson), { resultInfo });
    },
  },
  {
    method: 'GET',
    path: '/accounts/{account_id}',
    fallbackPermissions: ['#organization:read'],
    resource: 'account',
    handler: (ctx) => ok(accountJson(routeAccount(ctx))),
  },
  {
    method: 'GET',
    path: '/accounts/{account_id}/tokens/verify',
    fallbackPermissions: [],
    resource: 'none',
    inactiveTokens: true,
    handler: (ctx) => {
      const principal = ctx.principal;
      if (principal.kind !== 'account_token' || principal.account.id !== param(ctx, 'account_id')) {
        throw invalidApiToken();
      }
      return verifyResult(ctx, principal.token);
    },
  },
  {
    method: 'GET',
    path: '/accounts/{account_id}/tokens/{token_id}',
    fallbackPermissions: ['com.cloudflare.api.token.read'],
    resource: 'account',
    handler: (ctx) => ok(tokenJson(ctx.state, accountToken(ctx))),
  },
  {
    method: 'DELETE',
    path: '/accounts/{account_id}/tokens/{token_id}',
    fallbackPermissions: ['com.cloudflare.api.token.delete'],
    resource: 'account',
    handler: (ctx) => {
      const token = accountToken(ctx);
      ctx.state.deleteToken(token.id);
      return ok({ id: token.id });
    },
  },
];
