import { canOnAccount, canOnZone } from './fake-cloudflare.access.ts';
import { badRequest, unauthorizedResource } from './fake-cloudflare.errors.ts';
import { jsonBody, ok, ordered, paginate, routeZone } from './fake-cloudflare.router.ts';
import type { RouteDefinition } from './fake-cloudflare.router.ts';
import { zoneJson } from './fake-cloudflare.serializers.ts';
import type { ZoneRecord } from './fake-cloudflare.state.ts';
import { textFilter } from './accounts.routes.ts';

const ZONE_PAGES = { defaultPerPage: 20, minPerPage: 5, maxPerPage: 50 };
const ZONE_NAME = /^(?=.{4,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const ZONE_ORDER: Record<string, (z: ZoneRecord, accountName: string) => string> = {
  name: (z) => z.name,
  status: (z) => z.status,
  'account.id': (z) => z.accountId,
  'account.name': (_z, accountName) => accountName.toLowerCase(),
};

export const zoneRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/zones',
    // The document names no permission for the list; like the real API it shows only the zones
    // the credential may read.
    fallbackPermissions: ['#zone:read'],
    resource: 'none',
    handler: (ctx) => {
      const filters: Array<(z: ZoneRecord) => boolean> = [];
      const byName = textFilter(ctx.query.get('name'));
      if (byName) filters.push((z) => byName(z.name));
      const status = ctx.query.get('status');
      if (status) filters.push((z) => z.status === status);
      const accountId = ctx.query.get('account.id');
      if (accountId) filters.push((z) => z.accountId === accountId);
      const byAccountName = textFilter(ctx.query.get('account.name'));
      if (byAccountName) filters.push((z) => byAccountName(ctx.state.accounts.get(z.accountId)?.name ?? ''));
      const any = ctx.query.get('match') === 'any';
      const matches = (z: ZoneRecord) =>
        filters.length === 0 || (any ? filters.some((f) => f(z)) : filters.every((f) => f(z)));
      const zones = [...ctx.state.zones.values()].filter(
        (z) => matches(z) && canOnZone(ctx.state, ctx.principal, z, ctx.permissions),
      );
      const orderKey = ZONE_ORDER[ctx.query.get('order') ?? 'name'] ?? ZONE_ORDER.name!;
      const sorted = ordered(ctx, zones, (z) => orderKey(z, ctx.state.accounts.get(z.accountId)?.name ?? ''));
      const { result, resultInfo } = paginate(ctx, sorted, ZONE_PAGES);
      return ok(
        result.map((z) => zoneJson(ctx.state, z)),
        { resultInfo },
      );
    },
  },
  {
    method: 'POST',
    path: '/zones',
    fallbackPermissions: ['#zone:edit'],
    resource: 'none',
    handler: (ctx) => {
      const body = jsonBody(ctx) as { name?: unknown; account?: { id?: unknown }; type?: unknown } | null;
      const rawName = body?.name;
      const name = typeof rawName === 'string' ? rawName.trim().toLowerCase().replace(/\.$/, '') : '';
      if (!ZONE_NAME.test(name)) {
        throw badRequest(
          1099,
          `We were unable to identify ${name || String(rawName)} as a registered domain. Please ensure you are providing the root domain and not any subdomains (e.g., example.com, not subdomain.example.com)`,
        );
      }
      const accountId = body?.account?.id;
      if (typeof accountId !== 'string') throw badRequest(1002, 'account.id is required');
      const account = ctx.state.accounts.get(accountId);
      if (!account || !canOnAccount(ctx.principal, account, ctx.permissions)) throw unauthorizedResource();
      for (const zone of ctx.state.zones.values()) {
        if (zone.accountId === account.id && zone.name === name)
          throw badRequest(1061, `${name} already exists`);
      }
      const type = body?.type ?? 'full';
      if (type !== 'full' && type !== 'partial' && type !== 'secondary') {
        throw badRequest(1002, 'type must be one of full, partial, secondary');
      }
      const created = ctx.state.createZone({ accountId: account.id, name, type, status: 'pending' });
      return ok(zoneJson(ctx.state, ctx.state.zones.get(created.id)!));
    },
  },
  {
    method: 'GET',
    path: '/zones/{zone_id}',
    fallbackPermissions: ['#zone:read'],
    resource: 'zone',
    handler: (ctx) => ok(zoneJson(ctx.state, routeZone(ctx))),
  },
  {
    method: 'DELETE',
    path: '/zones/{zone_id}',
    fallbackPermissions: ['#zone:edit'],
    resource: 'zone',
    handler: (ctx) => {
      const zone = routeZone(ctx);
      ctx.state.deleteZone(zone.id);
      return ok({ id: zone.id });
    },
  },
];
