import { badRequest } from './fake-cloudflare.errors.ts';
import { jsonBody, ok, paginate, param, routeZone } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import { dnsRecordJson } from './fake-cloudflare.serializers.ts';
import type { DnsRecord } from './fake-cloudflare.state.ts';

const RECORD_PAGES = { defaultPerPage: 100, minPerPage: 1, maxPerPage: 5_000_000 };
const ORDER_KEYS: Record<string, (r: DnsRecord) => string | number> = {
  type: (r) => r.type,
  name: (r) => r.name,
  content: (r) => r.content,
  ttl: (r) => r.ttl,
  proxied: (r) => (r.proxied ? 1 : 0),
};

function recordNotFound() {
  return badRequest(81044, 'Record does not exist.', 404);
}

function existingRecord(ctx: RouteContext): DnsRecord {
  const record = ctx.state.dnsRecords.get(routeZone(ctx).id)?.get(param(ctx, 'dns_record_id'));
  if (!record) throw recordNotFound();
  return record;
}

/** `field`, `field.exact`, `field.contains`, `field.startswith`, `field.endswith` (case-insensitive). */
function stringFilters(ctx: RouteContext, field: 'name' | 'content'): Array<(r: DnsRecord) => boolean> {
  const out: Array<(r: DnsRecord) => boolean> = [];
  const get = (r: DnsRecord) => r[field].toLowerCase();
  const exact = ctx.query.get(field) ?? ctx.query.get(`${field}.exact`);
  if (exact !== null) {
    const want = exact.toLowerCase().replace(/\.$/, '');
    out.push((r) => get(r) === want);
  }
  const contains = ctx.query.get(`${field}.contains`);
  if (contains !== null) out.push((r) => get(r).includes(contains.toLowerCase()));
  const starts = ctx.query.get(`${field}.startswith`);
  if (starts !== null) out.push((r) => get(r).startsWith(starts.toLowerCase()));
  const ends = ctx.query.get(`${field}.endswith`);
  if (ends !== null) out.push((r) => get(r).endsWith(ends.toLowerCase()));
  return out;
}

export const dnsRecordRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/zones/{zone_id}/dns_records',
    fallbackPermissions: ['#dns_records:read'],
    resource: 'zone',
    handler: (ctx) => {
      const filters = [...stringFilters(ctx, 'name'), ...stringFilters(ctx, 'content')];
      const type = ctx.query.get('type');
      if (type) filters.push((r) => r.type === type.toUpperCase());
      const proxied = ctx.query.get('proxied');
      if (proxied === 'true' || proxied === 'false') filters.push((r) => r.proxied === (proxied === 'true'));
      const any = ctx.query.get('match') === 'any';
      const records = ctx.state
        .listDnsRecords(routeZone(ctx).id)
        .filter(
          (r) => filters.length === 0 || (any ? filters.some((f) => f(r)) : filters.every((f) => f(r))),
        );
      const key = ORDER_KEYS[ctx.query.get('order') ?? 'type'] ?? ORDER_KEYS.type!;
      const sign = ctx.query.get('direction') === 'desc' ? -1 : 1;
      records.sort((a, b) => {
        const ka = key(a);
        const kb = key(b);
        if (ka !== kb) return ka < kb ? -sign : sign;
        return a.name < b.name ? -1 : a.name > b.name ? 1 : a.createdOn.getTime() - b.createdOn.getTime();
      });
      const { result, resultInfo } = paginate(ctx, records, RECORD_PAGES);
      return ok(result.map(dnsRecordJson), { resultInfo });
    },
  },
  {
    method: 'POST',
    path: '/zones/{zone_id}/dns_records',
    fallbackPermissions: ['#dns_records:edit'],
    resource: 'zone',
    handler: (ctx) => ok(dnsRecordJson(ctx.state.insertDnsRecord(routeZone(ctx), jsonBody(ctx)))),
  },
  {
    method: 'GET',
    path: '/zones/{zone_id}/dns_records/{dns_record_id}',
    fallbackPermissions: ['#dns_records:read'],
    resource: 'zone',
    handler: (ctx) => ok(dnsRecordJson(existingRecord(ctx))),
  },
  {
    method: 'PUT',
    path: '/zones/{zone_id}/dns_records/{dns_record_id}',
    fallbackPermissions: ['#dns_records:edit'],
    resource: 'zone',
    handler: (ctx) =>
      ok(
        dnsRecordJson(ctx.state.replaceDnsRecord(routeZone(ctx), existingRecord(ctx), jsonBody(ctx), false)),
      ),
  },
  {
    method: 'PATCH',
    path: '/zones/{zone_id}/dns_records/{dns_record_id}',
    fallbackPermissions: ['#dns_records:edit'],
    resource: 'zone',
    handler: (ctx) =>
      ok(dnsRecordJson(ctx.state.replaceDnsRecord(routeZone(ctx), existingRecord(ctx), jsonBody(ctx), true))),
  },
  {
    method: 'DELETE',
    path: '/zones/{zone_id}/dns_records/{dns_record_id}',
    fallbackPermissions: ['#dns_records:edit'],
    resource: 'zone',
    handler: (ctx) => {
      const record = existingRecord(ctx);
      ctx.state.dnsRecords.get(record.zoneId)?.delete(record.id);
      return ok({ id: record.id });
    },
  },
];
