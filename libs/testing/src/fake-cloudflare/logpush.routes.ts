import { badRequest } from './fake-cloudflare.errors.ts';
import { ok, routeZone } from './fake-cloudflare.router.ts';
import type { RouteDefinition } from './fake-cloudflare.router.ts';
import type { LogpushJob } from './fake-cloudflare.state.ts';
import { parseJsonBody } from './request-body.parser.ts';

/**
 * A zone's Logpush jobs, enough of the API for a job to be created and seen: `destination_conf`
 * is required (Cloudflare validates the destination; the fake only checks it is a URI), `dataset`
 * defaults to `http_requests`.
 */
export const logpushRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/zones/{zone_id}/logpush/jobs',
    fallbackPermissions: ['#logs:edit'],
    resource: 'zone',
    handler: (ctx) => ok(ctx.state.logpushJobs.get(routeZone(ctx).id) ?? []),
  },
  {
    method: 'POST',
    path: '/zones/{zone_id}/logpush/jobs',
    fallbackPermissions: ['#logs:edit'],
    resource: 'zone',
    handler: (ctx) => {
      const zone = routeZone(ctx);
      const body = parseJsonBody(ctx.body) as Record<string, unknown> | null;
      const destination = body?.destination_conf;
      if (typeof destination !== 'string' || !/^[a-z0-9+.-]+:\/\/?\S+$/i.test(destination)) {
        throw badRequest(1002, 'destination_conf is required and must be a destination URI');
      }
      const jobs = ctx.state.logpushJobs.get(zone.id) ?? [];
      const job: LogpushJob = {
        id: jobs.length + 1,
        name: typeof body?.name === 'string' ? body.name : null,
        dataset: typeof body?.dataset === 'string' ? body.dataset : 'http_requests',
        destination_conf: destination,
        enabled: body?.enabled === true,
        created_on: ctx.now.toISOString(),
      };
      ctx.state.logpushJobs.set(zone.id, [...jobs, job]);
      return ok(job);
    },
  },
];
