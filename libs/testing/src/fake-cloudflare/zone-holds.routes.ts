import { badRequest } from './fake-cloudflare.errors.ts';
import { ok, routeZone } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import type { ZoneHold } from './fake-cloudflare.state.ts';

const NO_HOLD: ZoneHold = { hold: false, includeSubdomains: false, holdAfter: null };

function holdJson(hold: ZoneHold) {
  return {
    hold: hold.hold,
    include_subdomains: hold.includeSubdomains,
    ...(hold.holdAfter !== null ? { hold_after: hold.holdAfter } : {}),
  };
}

/** `include_subdomains` is a query parameter of the POST (not a body field), as the API declares it. */
function includeSubdomains(ctx: RouteContext): boolean {
  const value = ctx.query.get('include_subdomains');
  if (value === null || value === 'false') return false;
  if (value === 'true') return true;
  throw badRequest(1001, 'include_subdomains must be true or false');
}

export const zoneHoldRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/zones/{zone_id}/hold',
    fallbackPermissions: ['#zone:read'],
    resource: 'zone',
    handler: (ctx) => ok(holdJson(ctx.state.zoneHolds.get(routeZone(ctx).id) ?? NO_HOLD)),
  },
  {
    method: 'POST',
    path: '/zones/{zone_id}/hold',
    fallbackPermissions: ['#zone:edit'],
    resource: 'zone',
    handler: (ctx) => {
      const hold: ZoneHold = { hold: true, includeSubdomains: includeSubdomains(ctx), holdAfter: null };
      ctx.state.zoneHolds.set(routeZone(ctx).id, hold);
      return ok(holdJson(hold));
    },
  },
  {
    method: 'DELETE',
    path: '/zones/{zone_id}/hold',
    fallbackPermissions: ['#zone:edit'],
    resource: 'zone',
    handler: (ctx) => {
      const zone = routeZone(ctx);
      const current = ctx.state.zoneHolds.get(zone.id) ?? NO_HOLD;
      // With hold_after the hold is lifted until then; the fake does not re-enable it by itself.
      const hold: ZoneHold = { ...current, hold: false, holdAfter: ctx.query.get('hold_after') };
      ctx.state.zoneHolds.set(zone.id, hold);
      return ok(holdJson(hold));
    },
  },
];
