import { badRequest } from './fake-cloudflare.errors.ts';
import { newId } from './fake-cloudflare.ids.ts';
import { ok, param, routeAccount } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import type { TailSessionRecord } from './fake-cloudflare.state.ts';
import { parseJsonBody } from './request-body.parser.ts';

/** How long a tail lives at Cloudflare before it expires on its own (6 hours). */
const TAIL_TTL_MS = 6 * 60 * 60 * 1000;

function existingScript(ctx: RouteContext): { accountId: string; script: string } {
  const accountId = routeAccount(ctx).id;
  const script = param(ctx, 'script_name');
  if (!ctx.state.getWorkerScript(accountId, script)) {
    throw badRequest(10007, 'This Worker does not exist on your account.', 404);
  }
  return { accountId, script };
}

/**
 * Worker tail sessions, as Cloudflare answers them: the create returns `{id, url, expires_at}`
 * where `url` is the WebSocket (`fake-tail-socket.ts` serves it), the list shows it, the delete
 * ends it.
 */
export const tailRoutes: readonly RouteDefinition[] = [
  {
    method: 'POST',
    path: '/accounts/{account_id}/workers/scripts/{script_name}/tails',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.read', 'com.cloudflare.edge.worker.tail.create'],
    resource: 'account',
    handler: (ctx) => {
      const { accountId, script } = existingScript(ctx);
      let createBody: unknown = null;
      if (ctx.body.length > 0) {
        try {
          createBody = parseJsonBody(ctx.body);
        } catch {
          throw badRequest(10021, 'the request body must be JSON');
        }
      }
      const tail: TailSessionRecord = {
        id: newId(),
        accountId,
        script,
        createdAt: ctx.now,
        expiresAt: new Date(ctx.now.getTime() + TAIL_TTL_MS),
        createBody,
        deletedAt: null,
        connections: 0,
        filters: null,
        eventsSent: 0,
      };
      ctx.state.tails.set(tail.id, tail);
      return ok({
        id: tail.id,
        url: `${ctx.state.tailSocketBase}/tail/${tail.id}`,
        expires_at: tail.expiresAt.toISOString(),
      });
    },
  },
  {
    // The API document types the answer as one tail (`{id, url, expires_at}`): the newest live one.
    method: 'GET',
    path: '/accounts/{account_id}/workers/scripts/{script_name}/tails',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.read'],
    resource: 'account',
    handler: (ctx) => {
      const { accountId, script } = existingScript(ctx);
      const live = [...ctx.state.tails.values()].filter(
        (tail) =>
          tail.accountId === accountId &&
          tail.script === script &&
          !tail.deletedAt &&
          tail.expiresAt.getTime() > ctx.now.getTime(),
      );
      const newest = live.at(-1);
      return ok(
        newest
          ? {
              id: newest.id,
              url: `${ctx.state.tailSocketBase}/tail/${newest.id}`,
              expires_at: newest.expiresAt.toISOString(),
            }
          : null,
      );
    },
  },
  {
    method: 'DELETE',
    path: '/accounts/{account_id}/workers/scripts/{script_name}/tails/{id}',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.read', 'com.cloudflare.edge.worker.tail.create'],
    resource: 'account',
    handler: (ctx) => {
      const { accountId, script } = existingScript(ctx);
      const tail = ctx.state.tails.get(param(ctx, 'id'));
      if (!tail || tail.deletedAt || tail.accountId !== accountId || tail.script !== script) {
        throw badRequest(10057, 'Tail not found', 404);
      }
      tail.deletedAt = ctx.now;
      return ok(null);
    },
  },
];
