import type { IncomingHttpHeaders } from 'node:http';
import type { Principal } from './fake-cloudflare.access.ts';
import type { CfMessage } from './fake-cloudflare.errors.ts';
import { parseJsonBody } from './request-body.parser.ts';
import type { AccountRecord, FakeCloudflareState, ZoneRecord } from './fake-cloudflare.state.ts';

export type FakeHttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/**
 * What a route's permission applies to. The server resolves `{zone_id}`/`{account_id}` and
 * checks the permission before the handler runs; `none` routes check inside the handler
 * (lists filter by what the caller may see, verify endpoints need no permission).
 */
export type RouteResource = 'none' | 'user' | 'account' | 'zone';

export interface RouteContext {
  readonly state: FakeCloudflareState;
  readonly principal: Principal;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The path below `/client/v4`, as requested. */
  readonly path: string;
  /** The permission keys this route accepts (any one), from the OpenAPI document or the fallback table. */
  readonly permissions: readonly string[];
  readonly now: Date;
  /** Set for `zone` routes. */
  readonly zone: ZoneRecord | null;
  /** Set for `account` routes. */
  readonly account: AccountRecord | null;
}

export type RouteResult =
  | {
      readonly kind: 'envelope';
      readonly status: number;
      readonly result: unknown;
      readonly resultInfo?: unknown;
      readonly messages?: readonly CfMessage[];
    }
  | {
      readonly kind: 'raw';
      readonly status: number;
      readonly contentType: string;
      readonly body: Buffer | string;
      readonly headers?: Readonly<Record<string, string>>;
    }
  | { readonly kind: 'json'; readonly status: number; readonly body: unknown };

export type RouteHandler = (ctx: RouteContext) => RouteResult | Promise<RouteResult>;

export interface RouteDefinition {
  readonly method: FakeHttpMethod;
  /** A path template below `/client/v4`; a final `{name+}` takes the rest of the path. */
  readonly path: string;
  /** Used when the OpenAPI document is absent, lacks the operation or names no permission. */
  readonly fallbackPermissions: readonly string[];
  readonly resource: RouteResource;
  /** Let disabled/expired tokens through (the verify endpoints report the status instead of refusing). */
  readonly inactiveTokens?: boolean;
  readonly handler: RouteHandler;
}

export function ok(
  result: unknown,
  init: { status?: number; resultInfo?: unknown; messages?: readonly CfMessage[] } = {},
): RouteResult {
  return {
    kind: 'envelope',
    status: init.status ?? 200,
    result,
    ...(init.resultInfo !== undefined ? { resultInfo: init.resultInfo } : {}),
    ...(init.messages ? { messages: init.messages } : {}),
  };
}

export function raw(
  body: Buffer | string,
  contentType: string,
  headers?: Record<string, string>,
): RouteResult {
  return { kind: 'raw', status: 200, contentType, body, ...(headers ? { headers } : {}) };
}

export function param(ctx: RouteContext, name: string): string {
  const value = ctx.params[name];
  if (value === undefined) throw new Error(`route has no {${name}} parameter`);
  return value;
}

export function routeZone(ctx: RouteContext): ZoneRecord {
  if (!ctx.zone) throw new Error('route is not declared with the zone resource');
  return ctx.zone;
}

export function routeAccount(ctx: RouteContext): AccountRecord {
  if (!ctx.account) throw new Error('route is not declared with the account resource');
  return ctx.account;
}

export function jsonBody(ctx: RouteContext): unknown {
  return parseJsonBody(ctx.body);
}

export interface PageLimits {
  readonly defaultPerPage: number;
  readonly minPerPage: number;
  readonly maxPerPage: number;
}

export interface ResultInfo {
  readonly page: number;
  readonly per_page: number;
  readonly count: number;
  readonly total_count: number;
  readonly total_pages: number;
}

function intParam(value: string | null): number | null {
  if (value === null || value.trim() === '') return null;
  const n = Number(value);
  return Number.isFinite(n) ? Math.trunc(n) : null;
}

/** `page`/`per_page` as the real list endpoints read them; out-of-range sizes are clamped. */
export function paginate<T>(
  ctx: RouteContext,
  items: readonly T[],
  limits: PageLimits,
): { result: T[]; resultInfo: ResultInfo } {
  const requested = intParam(ctx.query.get('per_page')) ?? limits.defaultPerPage;
  const perPage = Math.min(limits.maxPerPage, Math.max(limits.minPerPage, requested));
  const page = Math.max(1, intParam(ctx.query.get('page')) ?? 1);
  const start = (page - 1) * perPage;
  const result = items.slice(start, start + perPage);
  return {
    result,
    resultInfo: {
      page,
      per_page: perPage,
      count: result.length,
      total_count: items.length,
      total_pages: Math.ceil(items.length / perPage),
    },
  };
}

/** Sorts by a key with the `direction` query parameter (asc by default). */
export function ordered<T>(ctx: RouteContext, items: T[], key: (item: T) => string | number): T[] {
  const sign = ctx.query.get('direction') === 'desc' ? -1 : 1;
  return items.sort((a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -sign : ka > kb ? sign : 0;
  });
}

interface CompiledRoute {
  readonly route: RouteDefinition;
  readonly segments: readonly (string | { readonly param: string; readonly rest: boolean })[];
}

export type RouteMatch =
  | { readonly kind: 'found'; readonly route: RouteDefinition; readonly params: Record<string, string> }
  | { readonly kind: 'wrong_method'; readonly allowed: readonly string[] }
  | { readonly kind: 'none' };

/** A flat route table; matching is a walk over precompiled segments (no regular expressions per request). */
export class Router {
  readonly #routes: CompiledRoute[];

  constructor(routes: readonly RouteDefinition[]) {
    this.#routes = routes.map((route) => ({
      route,
      segments: route.path
        .split('/')
        .slice(1)
        .map((s) => {
          const m = /^\{([a-z_]+)(\+)?\}$/.exec(s);
          return m ? { param: m[1]!, rest: m[2] === '+' } : s;
        }),
    }));
  }

  get routes(): readonly RouteDefinition[] {
    return this.#routes.map((r) => r.route);
  }

  match(method: string, path: string): RouteMatch {
    const parts = path.split('/').slice(1);
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
    const allowed: string[] = [];
    for (const compiled of this.#routes) {
      const params = matchSegments(compiled.segments, parts);
      if (!params) continue;
      if (compiled.route.method === method) return { kind: 'found', route: compiled.route, params };
      if (!allowed.includes(compiled.route.method)) allowed.push(compiled.route.method);
    }
    return allowed.length > 0 ? { kind: 'wrong_method', allowed } : { kind: 'none' };
  }
}

function matchSegments(
  segments: CompiledRoute['segments'],
  parts: readonly string[],
): Record<string, string> | null {
  const params: Record<string, string> = {};
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    const part = parts[i];
    if (part === undefined || part === '') return null;
    if (typeof segment === 'string') {
      if (segment !== part) return null;
      continue;
    }
    const value = segment.rest ? parts.slice(i).join('/') : part;
    try {
      params[segment.param] = decodeURIComponent(value);
    } catch {
      return null;
    }
    if (segment.rest) return params;
  }
  return segments.length === parts.length ? params : null;
}
