import { badRequest } from './fake-cloudflare.errors.ts';
import { jsonBody, ok, ordered, paginate, param, raw, routeAccount } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import { kvNamespaceJson } from './fake-cloudflare.serializers.ts';
import type { KvNamespaceRecord } from './fake-cloudflare.state.ts';
import { mediaType, parseJsonBody, parseMultipart } from './request-body.parser.ts';

const NAMESPACE_PAGES = { defaultPerPage: 20, minPerPage: 5, maxPerPage: 100 };
const MAX_KEY_BYTES = 512;
const MAX_VALUE_BYTES = 25 * 1024 * 1024;
const MIN_TTL_SECONDS = 60;
const BASE = '/accounts/{account_id}/storage/kv/namespaces';

function namespaceNotFound() {
  return badRequest(10013, "get namespace: 'namespace not found'", 404);
}

function keyNotFound() {
  return badRequest(10009, "get: 'key not found'", 404);
}

function namespace(ctx: RouteContext): KvNamespaceRecord {
  const ns = ctx.state.kvNamespaces.get(param(ctx, 'namespace_id'));
  if (!ns || ns.accountId !== routeAccount(ctx).id) throw namespaceNotFound();
  return ns;
}

function keyName(ctx: RouteContext): string {
  const key = param(ctx, 'key_name');
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw badRequest(10019, `Key names must be at most ${MAX_KEY_BYTES} bytes`, 414);
  }
  if (key === '.' || key === '..') throw badRequest(10019, 'Illegal key name: "." and ".." are not allowed');
  return key;
}

function nowSeconds(ctx: RouteContext): number {
  return Math.floor(ctx.now.getTime() / 1000);
}

function expiration(ctx: RouteContext): number | null {
  const ttl = ctx.query.get('expiration_ttl');
  const at = ctx.query.get('expiration');
  if (ttl !== null) {
    const seconds = Number(ttl);
    if (!Number.isInteger(seconds) || seconds < MIN_TTL_SECONDS) {
      throw badRequest(
        10033,
        `Invalid expiration_ttl of ${ttl}. Expiration TTL must be at least ${MIN_TTL_SECONDS}.`,
      );
    }
    return nowSeconds(ctx) + seconds;
  }
  if (at !== null) {
    const seconds = Number(at);
    if (!Number.isInteger(seconds) || seconds < nowSeconds(ctx) + MIN_TTL_SECONDS) {
      throw badRequest(
        10033,
        `Invalid expiration of ${at}. Please specify integer greater than the current number of seconds since the UNIX epoch plus ${MIN_TTL_SECONDS}.`,
      );
    }
    return seconds;
  }
  return null;
}

/** Raw bytes, or multipart with a `value` part and an optional `metadata` JSON part. */
function valueAndMetadata(ctx: RouteContext): { value: Buffer; metadata: unknown } {
  if (mediaType(ctx.headers['content-type']) !== 'multipart/form-data') {
    return { value: Buffer.from(ctx.body), metadata: null };
  }
  const parts = parseMultipart(ctx.body, ctx.headers['content-type']);
  const value = parts.find((p) => p.name === 'value');
  if (!value) throw badRequest(10021, 'multipart upload without a "value" part');
  const metadataPart = parts.find((p) => p.name === 'metadata');
  let metadata: unknown = null;
  if (metadataPart && metadataPart.data.length > 0) {
    try {
      metadata = parseJsonBody(metadataPart.data);
    } catch {
      throw badRequest(10021, 'metadata must be valid JSON');
    }
  }
  return { value: Buffer.from(value.data), metadata };
}

export const kvRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: BASE,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.namespace.list'],
    resource: 'account',
    handler: (ctx) => {
      const accountId = routeAccount(ctx).id;
      const namespaces = [...ctx.state.kvNamespaces.values()].filter((ns) => ns.accountId === accountId);
      const byId = ctx.query.get('order') === 'id';
      const sorted = ordered(ctx, namespaces, (ns) => (byId ? ns.id : ns.title));
      const { result, resultInfo } = paginate(ctx, sorted, NAMESPACE_PAGES);
      return ok(result.map(kvNamespaceJson), { resultInfo });
    },
  },
  {
    method: 'POST',
    path: BASE,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.namespace.create'],
    resource: 'account',
    handler: (ctx) => {
      const body = jsonBody(ctx) as { title?: unknown } | null;
      const title = body?.title;
      if (typeof title !== 'string' || title.trim() === '' || title.length > 512) {
        throw badRequest(10019, 'title is required: a string of 1 to 512 characters');
      }
      const accountId = routeAccount(ctx).id;
      for (const ns of ctx.state.kvNamespaces.values()) {
        if (ns.accountId === accountId && ns.title === title) {
          throw badRequest(10014, 'a namespace with this account ID and title already exists');
        }
      }
      const created = ctx.state.createKvNamespace({ accountId, title });
      return ok(kvNamespaceJson(ctx.state.kvNamespaces.get(created.id)!));
    },
  },
  {
    method: 'GET',
    path: `${BASE}/{namespace_id}`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.namespace.read'],
    resource: 'account',
    handler: (ctx) => ok(kvNamespaceJson(namespace(ctx))),
  },
  {
    method: 'DELETE',
    path: `${BASE}/{namespace_id}`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.namespace.delete'],
    resource: 'account',
    handler: (ctx) => {
      ctx.state.kvNamespaces.delete(namespace(ctx).id);
      return ok(null);
    },
  },
  {
    method: 'GET',
    path: `${BASE}/{namespace_id}/keys`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.key.list'],
    resource: 'account',
    handler: (ctx) => {
      const ns = namespace(ctx);
      const limitParam = ctx.query.get('limit');
      const limit = limitParam === null ? 1000 : Number(limitParam);
      if (!Number.isInteger(limit) || limit < 10 || limit > 1000) {
        throw badRequest(
          10019,
          `Invalid limit of ${limitParam}. Please specify an integer between 10 and 1000.`,
        );
      }
      const prefix = ctx.query.get('prefix') ?? '';
      const cursor = ctx.query.get('cursor');
      let after: string | null = null;
      if (cursor) {
        after = Buffer.from(cursor, 'base64url').toString('utf8');
        if (!after) throw badRequest(10019, 'Invalid cursor');
      }
      const now = nowSeconds(ctx);
      // KV lists keys in lexicographic order of their UTF-8 bytes.
      const names = [...ns.values.entries()]
        .filter(
          ([name, entry]) => name.startsWith(prefix) && (entry.expiration === null || entry.expiration > now),
        )
        .map(([name]) => name)
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
        .filter((name) => after === null || Buffer.compare(Buffer.from(name), Buffer.from(after)) > 0);
      const page = names.slice(0, limit);
      const more = names.length > limit;
      const last = page[page.length - 1];
      return ok(
        page.map((name) => {
          const entry = ns.values.get(name)!;
          return {
            name,
            ...(entry.expiration !== null ? { expiration: entry.expiration } : {}),
            ...(entry.metadata !== null ? { metadata: entry.metadata } : {}),
          };
        }),
        {
          resultInfo: {
            count: page.length,
            cursor: more && last !== undefined ? Buffer.from(last).toString('base64url') : '',
          },
        },
      );
    },
  },
  {
    method: 'PUT',
    path: `${BASE}/{namespace_id}/values/{key_name+}`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.key.update'],
    resource: 'account',
    handler: (ctx) => {
      const ns = namespace(ctx);
      const key = keyName(ctx);
      const exp = expiration(ctx);
      const { value, metadata } = valueAndMetadata(ctx);
      if (value.length > MAX_VALUE_BYTES) throw badRequest(10033, 'Value is larger than 25 MiB', 413);
      ns.values.set(key, { value, expiration: exp, metadata });
      return ok(null);
    },
  },
  {
    method: 'GET',
    path: `${BASE}/{namespace_id}/values/{key_name+}`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.key.read'],
    resource: 'account',
    handler: (ctx) => {
      const ns = namespace(ctx);
      const entry = ctx.state.getKvEntry(ns.id, keyName(ctx));
      if (!entry) throw keyNotFound();
      return raw(
        entry.value,
        'application/octet-stream',
        entry.expiration !== null ? { expiration: String(entry.expiration) } : undefined,
      );
    },
  },
  {
    method: 'DELETE',
    path: `${BASE}/{namespace_id}/values/{key_name+}`,
    fallbackPermissions: ['com.cloudflare.edge.storage.kv.key.delete'],
    resource: 'account',
    handler: (ctx) => {
      namespace(ctx).values.delete(keyName(ctx));
      return ok(null);
    },
  },
];
