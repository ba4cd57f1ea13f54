import { createServer } from 'node:http';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { accountRoutes } from './accounts.routes.ts';
import { dnsRecordRoutes } from './dns-records.routes.ts';
import {
  budgetKey,
  canOnAccount,
  canOnUser,
  canOnZone,
  ownerReachesAccount,
  ownerReachesZone,
  principalId,
} from './fake-cloudflare.access.ts';
import type { FakePrincipalKind, Principal } from './fake-cloudflare.access.ts';
import { authenticate } from './fake-cloudflare.auth.ts';
import {
  authenticationError,
  CfError,
  couldNotRoute,
  methodNotAllowed,
  noRoute,
  rateLimited,
  unauthorizedResource,
} from './fake-cloudflare.errors.ts';
import { FaultController } from './fake-cloudflare.faults.ts';
import type { FakeCloudflareFaults } from './fake-cloudflare.faults.ts';
import { newRay } from './fake-cloudflare.ids.ts';
import { FAKE_CF_PERMISSION_GROUPS } from './fake-cloudflare.permissions.ts';
import {
  DEFAULT_FAKE_BUDGET,
  DEFAULT_FAKE_GRAPHQL_BUDGET,
  DEFAULT_FAKE_IP_LIMIT,
  DEFAULT_FAKE_LOCKOUT_SECONDS,
  FakeRateLimits,
} from './fake-cloudflare.rate-limit.ts';
import type { FakeBudget, FakeLimits, LimitedBy, FakeWindowState } from './fake-cloudflare.rate-limit.ts';
import { Router } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition, RouteResult } from './fake-cloudflare.router.ts';
import { indexSpecPermissions, readSpecFile } from './fake-cloudflare.spec.ts';
import { FakeCloudflareState } from './fake-cloudflare.state.ts';
import type { FakeClock, TailSessionRecord } from './fake-cloudflare.state.ts';
import { graphqlRoutes } from './graphql.routes.ts';
import { kvRoutes } from './kv.routes.ts';
import { readBody } from './request-body.parser.ts';
import { userRoutes } from './user.routes.ts';
import { workersScriptRoutes } from './workers-scripts.routes.ts';
import { zoneHoldRoutes } from './zone-holds.routes.ts';
import { logpushRoutes } from './logpush.routes.ts';
import { zoneRoutes } from './zones.routes.ts';
import { tailRoutes } from './tails.routes.ts';
import { serveTailSockets } from './fake-tail-socket.ts';

export const FAKE_CF_BASE_PATH = '/client/v4';

export interface FakeCloudflareOptions {
  /** 0 (default) picks a free port. */
  readonly port?: number;
  readonly host?: string;
  /** The Cloudflare OpenAPI document; the permissions of implemented routes are taken from it. */
  readonly specPath?: string;
  /** The same document already parsed (saves reading 4 MB per fake in large test suites). */
  readonly spec?: unknown;
  /** Per-user (and per-account for account-owned tokens) REST budget; null disables it. Default 1200/300 s. */
  readonly budget?: FakeBudget | null;
  /** Per-user GraphQL budget. Default 320/300 s, or none when `budget` is null. */
  readonly graphqlBudget?: FakeBudget | null;
  /** Requests per second per client IP. Default 200, or none when `budget` is null. */
  readonly perIpPerSecond?: number | null;
  /** How long exceeding `budget` locks the user out. Default 300 s. */
  readonly lockoutSeconds?: number;
  readonly clock?: FakeClock;
  /** How many log entries `requests()` keeps (oldest dropped first). Default 10,000. */
  readonly requestLogLimit?: number;
  /** Largest request body accepted. Default 32 MiB. */
  readonly maxBodyBytes?: number;
  /**
   * The WebSocket base URL tail sessions are handed out on (`{base}/tail/{id}`). Default: this
   * fake's own origin as `ws://`, where it serves them.
   */
  readonly tailSocketBase?: string;
  /** Milliseconds between two scripted tail events. Default 50. */
  readonly tailIntervalMs?: number;
}

/** Worker tail sessions, for tests: what to stream, and what happened to each session. */
export interface FakeTails {
  /** The events every tail of this Worker streams, in order (Cloudflare's trace event JSON). */
  script(accountId: string, script: string, events: readonly unknown[]): void;
  /** Every session created since the last reset, deleted ones included (`deletedAt` set). */
  sessions(): readonly TailSessionRecord[];
  /** WebSocket upgrades refused (unknown or deleted tail, or no `trace-v1` subprotocol). */
  refused(): number;
}

export interface FakeRequestLogEntry {
  readonly method: string;
  /** Below `/client/v4`, without the query string. */
  readonly path: string;
  readonly query: string;
  readonly principalKind: FakePrincipalKind | null;
  /** User id (user tokens, Global API Key) or account id (account-owned tokens). */
  readonly principalId: string | null;
  readonly tokenId: string | null;
  readonly status: number;
  readonly at: Date;
  readonly cfRay: string;
  readonly durationMs: number;
  readonly clientIp: string;
  /** Which limit answered 429, if one did. */
  readonly limitedBy: LimitedBy | null;
}

export interface FakeRoutePermission {
  readonly method: string;
  readonly path: string;
  /** Any one of these satisfies the route (empty: any valid credential). */
  readonly permissions: readonly string[];
  readonly source: 'spec' | 'fallback';
  readonly operationId: string | null;
}

export interface FakeCloudflare {
  /** `http://127.0.0.1:PORT/client/v4`, to use as `CLOUDFLARE_API_BASE`. */
  readonly url: string;
  readonly origin: string;
  readonly port: number;
  readonly state: FakeCloudflareState;
  readonly faults: FakeCloudflareFaults;
  /** Log entries, oldest first. */
  requests(): readonly FakeRequestLogEntry[];
  /** Requests that reached the fake (answered or failed by injection; dropped/hung ones excluded). */
  requestCount(): number;
  clearRequests(): void;
  /** Sets the per-user REST budget and starts every window afresh. */
  setBudget(budget: FakeBudget | null): void;
  /** Sets any of the limits and starts every window and lockout afresh. */
  setLimits(limits: Partial<FakeLimits>): void;
  limits(): FakeLimits;
  /**
   * A user's (or an account's, for account-owned tokens) window now, as its `Ratelimit` header
   * would report it, without counting a request: for tests that play the engineer's dashboard.
   */
  quota(owner: { userId: string } | { accountId: string }, kind?: 'rest' | 'graphql'): FakeWindowState | null;
  routePermissions(): readonly FakeRoutePermission[];
  readonly tails: FakeTails;
  /** Empties the state, faults, request log, counters and rate-limit windows. */
  reset(): void;
  close(): Promise<void>;
}

const systemClock: FakeClock = { now: () => new Date() };

export const FAKE_CF_ROUTES: readonly RouteDefinition[] = [
  ...userRoutes,
  ...accountRoutes,
  ...zoneRoutes,
  ...zoneHoldRoutes,
  ...logpushRoutes,
  ...dnsRecordRoutes,
  ...workersScriptRoutes,
  ...kvRoutes,
  ...tailRoutes,
  ...graphqlRoutes,
];

function injectedFailure(status: number, retryAfterSeconds: number | null, code: number): CfError {
  return new CfError(
    status,
    [{ code, message: STATUS_CODES[status] ?? 'Error' }],
    retryAfterSeconds === null ? {} : { 'retry-after': String(retryAfterSeconds) },
  );
}

/** An error that quotes the request's credential back, for tests that it never goes further. */
function echoedCredential(headers: IncomingHttpHeaders): CfError {
  const presented = String(headers.authorization ?? headers['x-auth-key'] ?? '').replace(/^Bearer\s+/i, '');
  return new CfError(400, [
    {
      code: 6003,
      message: `Invalid request headers: could not parse credential '${presented}' (base64 ${Buffer.from(presented).toString('base64')})`,
    },
  ]);
}

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: Buffer | string,
  ray: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  res.writeHead(status, {
    ...headers,
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cf-ray': ray,
    server: 'cloudflare',
  });
  res.end(body);
}

function writeResult(
  res: ServerResponse,
  result: RouteResult,
  ray: string,
  rateHeaders: Readonly<Record<string, string>>,
): number {
  if (result.kind === 'raw') {
    send(res, result.status, result.contentType, result.body, ray, { ...rateHeaders, ...result.headers });
  } else if (result.kind === 'json') {
    send(res, result.status, 'application/json', JSON.stringify(result.body), ray, rateHeaders);
  } else {
    const envelope = {
      result: result.result,
      success: true,
      errors: [],
      messages: result.messages ?? [],
      ...(result.resultInfo !== undefined ? { result_info: result.resultInfo } : {}),
    };
    send(res, result.status, 'application/json', JSON.stringify(envelope), ray, rateHeaders);
  }
  return result.status;
}

function writeError(
  res: ServerResponse,
  error: unknown,
  ray: string,
  rateHeaders: Readonly<Record<string, string>>,
): number {
  const cf =
    error instanceof CfError
      ? error
      : new CfError(500, [{ code: 500, message: `fake Cloudflare internal error: ${String(error)}` }]);
  if (!(error instanceof CfError)) console.error('fake Cloudflare: unexpected error', error);
  const envelope = { success: false, errors: cf.errors, messages: [], result: null };
  send(res, cf.status, 'application/json', JSON.stringify(envelope), ray, { ...rateHeaders, ...cf.headers });
  return cf.status;
}

export async function startFakeCloudflare(options: FakeCloudflareOptions = {}): Promise<FakeCloudflare> {
  const clock = options.clock ?? systemClock;
  const spec = options.spec ?? (options.specPath ? await readSpecFile(options.specPath) : null);
  const specIndex = spec ? indexSpecPermissions(spec) : null;

  // Resolve every route's permissions once: no per-request spec lookups.
  const table = new Map<RouteDefinition, FakeRoutePermission>();
  for (const route of FAKE_CF_ROUTES) {
    const found = specIndex?.lookup(route.method, route.path);
    const fromSpec = found?.found === true && found.permissions !== null && found.permissions.length > 0;
    table.set(route, {
      method: route.method,
      path: route.path,
      permissions: fromSpec ? found.permissions! : route.fallbackPermissions,
      source: fromSpec ? 'spec' : 'fallback',
      operationId: found?.found === true ? found.operationId : null,
    });
  }
  const knownPermissions = specIndex
    ? new Set([
        ...specIndex.vocabulary,
        ...FAKE_CF_ROUTES.flatMap((r) => r.fallbackPermissions),
        ...Object.values(FAKE_CF_PERMISSION_GROUPS).flat(),
      ])
    : null;

  const state = new FakeCloudflareState({ clock, knownPermissions });
  const router = new Router(FAKE_CF_ROUTES);
  // `budget: null` has always meant "no rate limiting": the newer limits follow it unless set.
  const limited = options.budget !== null;
  const limits = new FakeRateLimits({
    budget: options.budget === undefined ? DEFAULT_FAKE_BUDGET : options.budget,
    graphql:
      options.graphqlBudget !== undefined
        ? options.graphqlBudget
        : limited
          ? DEFAULT_FAKE_GRAPHQL_BUDGET
          : null,
    perIpPerSecond:
      options.perIpPerSecond !== undefined ? options.perIpPerSecond : limited ? DEFAULT_FAKE_IP_LIMIT : null,
    lockoutSeconds: options.lockoutSeconds ?? DEFAULT_FAKE_LOCKOUT_SECONDS,
  });
  const logLimit = options.requestLogLimit ?? 10_000;
  const maxBodyBytes = options.maxBodyBytes ?? 32 * 1024 * 1024;
  const hung = new Set<Socket>();
  const faults = new FaultController(() => {
    for (const socket of hung) socket.destroy();
    hung.clear();
  });
  let log: FakeRequestLogEntry[] = [];
  let reached = 0;

  function authorize(
    route: RouteDefinition,
    principal: Principal,
    params: Record<string, string>,
    path: string,
    permissions: readonly string[],
  ) {
    if (route.resource === 'zone') {
      const zone = state.zones.get(params.zone_id ?? '');
      if (!zone || !ownerReachesZone(state, principal, zone)) throw couldNotRoute(path);
      if (!canOnZone(state, principal, zone, permissions)) throw authenticationError();
      return { zone, account: null };
    }
    if (route.resource === 'account') {
      const account = state.accounts.get(params.account_id ?? '');
      if (!account || !ownerReachesAccount(principal, account)) throw couldNotRoute(path);
      if (!canOnAccount(principal, account, permissions)) throw unauthorizedResource();
      return { zone: null, account };
    }
    if (route.resource === 'user' && !canOnUser(principal, permissions)) throw unauthorizedResource();
    return { zone: null, account: null };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const mode = faults.unreachable;
    if (mode === 'drop') {
      req.socket.destroy();
      return;
    }
    if (mode === 'hang') {
      hung.add(req.socket);
      req.socket.once('close', () => hung.delete(req.socket));
      return;
    }
    reached += 1;
    const started = performance.now();
    const at = clock.now();
    const ray = newRay();
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const fullPath = q < 0 ? url : url.slice(0, q);
    const query = q < 0 ? '' : url.slice(q + 1);
    const path = fullPath.startsWith(`${FAKE_CF_BASE_PATH}/`)
      ? fullPath.slice(FAKE_CF_BASE_PATH.length)
      : fullPath;
    const clientIp = req.socket.remoteAddress ?? 'unknown';
    let principal: Principal | null = null;
    let status = 500;
    let limitedBy: LimitedBy | null = null;
    let rateHeaders: Readonly<Record<string, string>> = {};
    try {
      if (faults.latencyMs > 0) await delay(faults.latencyMs);
      const injected = faults.takeFailure();
      if (injected !== null)
        throw injectedFailure(injected.status, injected.retryAfterSeconds, injected.code);
      if (faults.takeEcho()) throw echoedCredential(req.headers);
      const perIp = limits.takeIp(clientIp, clock.now().getTime());
      if (!perIp.ok) {
        limitedBy = perIp.limitedBy;
        throw rateLimited(perIp.retryAfterSeconds);
      }
      if (!fullPath.startsWith(`${FAKE_CF_BASE_PATH}/`)) throw noRoute();
      const match = router.match(method, path);
      if (match.kind === 'none') throw noRoute();
      if (match.kind === 'wrong_method') throw methodNotAllowed(method, match.allowed);
      const body = await readBody(req, maxBodyBytes);
      const { route, params } = match;
      const now = clock.now();
      principal = authenticate(req.headers, state, now, route.inactiveTokens === true);
      const decision = limits.take(
        budgetKey(principal),
        route.path === '/graphql' ? 'graphql' : 'rest',
        now.getTime(),
      );
      rateHeaders = decision.headers;
      if (!decision.ok) {
        limitedBy = decision.limitedBy;
        throw rateLimited(decision.retryAfterSeconds);
      }
      if (principal.kind !== 'global_api_key') principal.token.lastUsedOn = now;
      const permissions = table.get(route)!.permissions;
      const resources = authorize(route, principal, params, path, permissions);
      const ctx: RouteContext = {
        state,
        principal,
        params,
        query: new URLSearchParams(query),
        headers: req.headers,
        body,
        path,
        permissions,
        now,
        ...resources,
      };
      status = writeResult(res, await route.handler(ctx), ray, rateHeaders);
    } catch (error) {
      status = writeError(res, error, ray, rateHeaders);
    } finally {
      log.push({
        method,
        path,
        query,
        principalKind: principal?.kind ?? null,
        principalId: principal ? principalId(principal) : null,
        tokenId: principal && principal.kind !== 'global_api_key' ? principal.token.id : null,
        status,
        at,
        cfRay: ray,
        durationMs: performance.now() - started,
        clientIp,
        limitedBy,
      });
      if (log.length > logLimit * 2) log = log.slice(-logLimit);
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res);
  });
  server.on('connection', (socket) => {
    if (faults.unreachable === 'drop') socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostForUrl = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const origin = `http://${hostForUrl}:${address.port}`;
  state.tailSocketBase = options.tailSocketBase ?? `ws://${hostForUrl}:${address.port}`;
  const tailSockets = serveTailSockets(server, state, {
    ...(options.tailIntervalMs !== undefined ? { intervalMs: options.tailIntervalMs } : {}),
  });

  return {
    url: `${origin}${FAKE_CF_BASE_PATH}`,
    origin,
    port: address.port,
    state,
    faults,
    requests: () => (log.length > logLimit ? log.slice(-logLimit) : [...log]),
    requestCount: () => reached,
    clearRequests: () => {
      log = [];
      reached = 0;
    },
    setBudget: (budget) => limits.set({ budget }),
    setLimits: (changes) => limits.set(changes),
    limits: () => limits.limits(),
    quota: (owner, kind = 'rest') =>
      limits.quota(
        'userId' in owner ? `user:${owner.userId}` : `account:${owner.accountId}`,
        kind,
        clock.now().getTime(),
      ),
    routePermissions: () => [...table.values()],
    tails: {
      script: (accountId, script, events) => state.tailEvents.set(`${accountId}/${script}`, [...events]),
      sessions: () => [...state.tails.values()],
      refused: () => tailSockets.refused(),
    },
    reset: () => {
      state.clear();
      faults.reset();
      limits.reset();
      log = [];
      reached = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        faults.reset();
        tailSockets.close();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
