import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateKeyRing } from '@warden/kms';
import { DEFAULT_KEY_PREFIX, budgetKeys, createBudgetRedisClient } from '@warden/ratelimit';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { SPEC_PATH } from './test-support/paths.ts';

const REPLICAS = 4;
const CAPACITY = 1200;
/**
 * One token per 72 s: a burst that lasts under 72 s (it takes a few) can admit exactly the
 * capacity and not one more. The production default 1200/300 refills 4 tokens a second, so on a
 * loaded machine a burst spread over a few seconds would let a varying handful more through.
 */
const WINDOW_SECONDS = 86_400;
/** The longest wait an empty bucket can report: the time one token takes to refill. */
const ONE_TOKEN_SECONDS = WINDOW_SECONDS / CAPACITY;

/**
 * 1,500 upstream requests as 15 executions per replica, all 60 running at once over the four
 * processes, each sending 25 `cloudflare.request`s one after another: 60 takes race for one
 * bucket at any moment, from four processes, until 1,500 were made.
 *
 * Why not all 1,500 in flight at once: a take is one atomic Redis script whatever the
 * concurrency, so more in flight tests nothing more about the shared bucket, while on 2 shared
 * cores a backlog of hundreds of requests in one process's event loop delays Redis replies past
 * the budget client's 500 ms command timeout (observed with 375 and with 75 per process under
 * load): the budget then refuses with `unavailable`, and a timed-out take may still have run on
 * Redis, so the count would no longer be exact. Why not 1,500 single-request executions: the
 * per-execution cost (a fresh isolate, an audit transaction) dominates. 15 executions fit in one
 * sandbox child's 16 concurrent slots (SANDBOX_POOL_SIZE=1), so none waits in the pool queue,
 * whose wait counts against the 30 s execution deadline; 25 requests stay under the 50 one
 * execution may make.
 */
const EXECUTIONS_PER_REPLICA = 15;
const ROUNDS = 25;
const REQUESTS_PER_ROUND = 1;
const REQUESTS_PER_EXECUTION = ROUNDS * REQUESTS_PER_ROUND;
const TOTAL_REQUESTS = REPLICAS * EXECUTIONS_PER_REPLICA * REQUESTS_PER_EXECUTION;

/** The wait in a `rate_limited` message ("...; retry in 72 s" / "...; retry after 60 s"). */
function waitSeconds(message: string): number | null {
  const match = /retry (?:in|after) (\d+) s\b/.exec(message);
  return match ? Number(match[1]) : null;
}

type RequestOutcome = 'ok' | { readonly code: string; readonly message: string };

interface ExecuteResponse {
  readonly data: RequestOutcome[] | null;
  readonly error?: { readonly code: string; readonly message: string };
  readonly execution_id: string;
}

/** Sandbox code making `rounds` × `perRound` requests (each round at once) and returning each outcome. */
function requestsCode(path: string, rounds: number, perRound: number): string {
  const outcome =
    "(s) => s.status === 'fulfilled' ? (s.value.success ? 'ok' : { code: 'http_' + s.value.status, message: JSON.stringify(s.value.errors) }) : { code: String(s.reason.code), message: String(s.reason.message) }";
  return `async () => {
    const send = () => cloudflare.request({ method: 'GET', path: ${JSON.stringify(path)} });
    const out = [];
    for (let round = 0; round < ${rounds}; round++) {
      const settled = await Promise.allSettled(Array.from({ length: ${perRound} }, () => send()));
      out.push(...settled.map(${outcome}));
    }
    return out;
  }`;
}

describe('the upstream rate budget across four connector processes sharing Redis', () => {
  let db: TestDatabase;
  let fake: FakeCloudflare;
  let redis: Redis;
  const replicas: ConnectorProcess[] = [];
  const tempDirs: string[] = [];
  const principals: string[] = [];
  const adminToken = randomBytes(32).toString('hex');
  let apiKey: string;

  const replica = (index: number): ConnectorProcess => replicas[index]!;

  async function call(
    target: ConnectorProcess,
    method: 'GET' | 'POST',
    urlPath: string,
    token: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown }> {
    let res: Response;
    try {
      res = await fetch(`${target.url}${urlPath}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        // Generous: a loaded 2-core machine must slow the test down, never fail it.
        signal: AbortSignal.timeout(90_000),
      });
    } catch (error) {
      // A refused connection usually means the process died: show why.
      target.assertRunning();
      throw error;
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json };
  }

  /** A fresh Cloudflare user (a fresh random id, so a new bucket in Redis) connected under `identifier`. */
  async function connectFreshUser(identifier: string): Promise<{ userId: string; zoneId: string }> {
    const user = fake.state.createUser({ email: `${identifier}@example.com` });
    const account = fake.state.createAccount({ name: `${identifier} account`, members: [user.id] });
    const zone = fake.state.createZone({ accountId: account.id, name: `${identifier}.example.com` });
    const token = fake.state.createUserToken({
      userId: user.id,
      // user.read lets verification find the user, so the principal is cf:user:<id>.
      permissions: ['com.cloudflare.api.user.read', '#zone:read'],
    });
    const res = await call(replica(0), 'POST', '/api/v1/connected_accounts', apiKey, {
      identifier,
      authorization: { type: 'api_token', api_token: token.value },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(201);
    const principal = `cf:user:${user.id}`;
    principals.push(principal);
    // The service's Redis key space is not configurable; a fresh user id is what makes the bucket new.
    const keys = budgetKeys(DEFAULT_KEY_PREFIX, principal);
    expect(await redis.exists(keys.bucket, keys.block)).toBe(0);
    return { userId: user.id, zoneId: zone.id };
  }

  async function execute(
    target: ConnectorProcess,
    identifier: string,
    code: string,
  ): Promise<ExecuteResponse> {
    const res = await call(target, 'POST', '/api/v1/execute_tool', apiKey, {
      tool_name: 'cloudflare_execute',
      identifier,
      params: { code },
    });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    return res.json as ExecuteResponse;
  }

  async function auditCount(query: Record<string, string>): Promise<number> {
    let total = 0;
    let pageToken: string | null = null;
    do {
      const params = new URLSearchParams({ ...query, page_size: '100' });
      if (pageToken) params.set('page_token', pageToken);
      const res = await call(replica(REPLICAS - 1), 'GET', `/api/v1/audit/events?${params}`, apiKey);
      expect(res.status, JSON.stringify(res.json)).toBe(200);
      const page = res.json as { events: unknown[]; next_page_token: string | null };
      total += page.events.length;
      pageToken = page.next_page_token;
    } while (pageToken);
    return total;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    // Only Warden's budget may limit in the first test; the second sets one on purpose.
    fake = await startFakeCloudflare({ specPath: SPEC_PATH, budget: null });
    redis = createBudgetRedisClient(process.env.REDIS_URL ?? '', { lazyConnect: true });
    await redis.connect();

    // Replicas must share the key that wraps data keys, or one could not open a credential
    // another stored; created once here so four processes do not race to create four.
    const keyDir = mkdtempSync(path.join(tmpdir(), 'warden-budget-keys-'));
    tempDirs.push(keyDir);
    const keyFile = path.join(keyDir, 'warden-keys.json');
    loadOrCreateKeyRing(keyFile);

    const start = (i: number): Promise<ConnectorProcess> => {
      const dataDir = mkdtempSync(path.join(tmpdir(), `warden-budget-${i}-`));
      tempDirs.push(dataDir);
      return startConnectorProcess(`replica-${i}`, {
        DATABASE_URL: db.url,
        REDIS_URL: process.env.REDIS_URL ?? '',
        WARDEN_ADMIN_TOKEN: adminToken,
        LOCAL_KEY_FILE: keyFile,
        DATA_DIR: dataDir,
        CLOUDFLARE_API_BASE: fake.url,
        CLOUDFLARE_SPEC_PATH: SPEC_PATH,
        CLOUDFLARE_BUDGET: `${CAPACITY}/${WINDOW_SECONDS}`,
        WARDEN_REPLICAS: String(REPLICAS),
        SANDBOX_POOL_SIZE: '1',
        LOG_LEVEL: 'warn',
      });
    };
    // The first replica prepares the database alone (migrations, audit partitions), as a
    // deployment's first instance would; the rest then start together. What is under test is
    // the shared budget, not a race between four processes creating the same tables.
    replicas.push(await start(0));
    const started = await Promise.allSettled(Array.from({ length: REPLICAS - 1 }, (_, i) => start(i + 1)));
    for (const result of started) if (result.status === 'fulfilled') replicas.push(result.value);
    const failed = started.filter((r) => r.status === 'rejected');
    if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason;

    const tenant = await call(replica(0), 'POST', '/admin/v1/tenants', adminToken, { name: 'Budget tenant' });
    expect(tenant.status, JSON.stringify(tenant.json)).toBe(201);
    apiKey = (tenant.json as { api_key: string }).api_key;
  }, 240_000);

  afterAll(async () => {
    const stops = await Promise.allSettled(replicas.map((r) => r.stop()));
    await fake?.close();
    if (redis) {
      // The buckets would otherwise sit in the shared Redis until they refill (a day).
      const keys = principals.flatMap((p) => Object.values(budgetKeys(DEFAULT_KEY_PREFIX, p)));
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    await db?.drop();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    for (const stop of stops) if (stop.status === 'rejected') throw stop.reason;
  }, 120_000);

  it(`lets exactly ${CAPACITY} of ${TOTAL_REQUESTS} requests racing over ${REPLICAS} replicas through and refuses the rest with a wait`, async () => {
    const identifier = 'burst-agent';
    const { userId, zoneId } = await connectFreshUser(identifier);
    // Connecting verified the token upstream; count only the burst.
    fake.clearRequests();
    const code = requestsCode(`/zones/${zoneId}`, ROUNDS, REQUESTS_PER_ROUND);

    const responses = await Promise.all(
      replicas.flatMap((target) =>
        Array.from({ length: EXECUTIONS_PER_REPLICA }, () => execute(target, identifier, code)),
      ),
    );
    for (const r of replicas) r.assertRunning();

    const outcomes: RequestOutcome[] = [];
    for (const response of responses) {
      expect(response.error, JSON.stringify(response.error)).toBeUndefined();
      expect(response.data).toHaveLength(REQUESTS_PER_EXECUTION);
      outcomes.push(...(response.data ?? []));
    }
    const refused = outcomes.filter((o) => o !== 'ok');
    const other = refused.filter((o) => o.code !== 'rate_limited');
    // The replicas log why an upstream call failed; show it with the failure.
    const logs = () => replicas.map((r) => r.output()).join('\n');
    expect(other, `requests that failed other than by the budget:\n${logs()}`).toEqual([]);
    expect(outcomes).toHaveLength(TOTAL_REQUESTS);
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(CAPACITY);
    expect(refused).toHaveLength(TOTAL_REQUESTS - CAPACITY);
    const waits = refused.map((o) => waitSeconds(o.message));
    const withoutWait = refused.filter((_, i) => !(waits[i]! > 0));
    expect(withoutWait, 'refusals without a positive wait').toEqual([]);
    // The wait of an empty bucket is the time one token takes to come back, never more.
    expect(Math.max(...(waits as number[]))).toBeLessThanOrEqual(Math.ceil(ONE_TOKEN_SECONDS));

    const reached = fake.requests().filter((r) => r.principalId === userId);
    expect(reached).toHaveLength(CAPACITY);
    expect(reached.every((r) => r.status === 200 && r.path === `/zones/${zoneId}`)).toBe(true);
    expect(fake.requestCount()).toBe(CAPACITY);

    // Every request, admitted or refused, is in the audit trail, whichever replica handled it.
    const upstream = { identifier, kind: 'upstream_request', action: 'cloudflare.request' };
    expect(await auditCount({ ...upstream, outcome: 'rate_limited' })).toBe(TOTAL_REQUESTS - CAPACITY);
    expect(await auditCount({ ...upstream, outcome: 'success' })).toBe(CAPACITY);
    // Write-ahead: each admitted request's intent was committed before it left; refusals have none.
    expect(await auditCount({ ...upstream, outcome: 'pending' })).toBe(CAPACITY);
    expect(await auditCount({ identifier, kind: 'tool_call', outcome: 'success' })).toBe(
      REPLICAS * EXECUTIONS_PER_REPLICA,
    );
  }, 120_000);

  it("honours an upstream 429's Retry-After on every replica without calling Cloudflare", async () => {
    const identifier = 'throttled-agent';
    const { userId, zoneId } = await connectFreshUser(identifier);
    // Cloudflare's own budget, set after connecting so verification does not use it up: the
    // user's second request gets a 429 whose Retry-After (up to 600 s) outlasts the test, and
    // stays under the 3,600 s cap on blocks so the block is exactly what Cloudflare asked for.
    fake.setBudget({ requests: 1, windowSeconds: 600 });
    try {
      fake.clearRequests();
      const first = await execute(replica(0), identifier, requestsCode(`/zones/${zoneId}`, 2, 1));
      expect(first.error, JSON.stringify(first.error)).toBeUndefined();
      const [admitted, throttled] = first.data ?? [];
      expect(admitted).toBe('ok');
      expect(throttled).toMatchObject({ code: 'rate_limited' });
      const retryAfter = waitSeconds((throttled as { message: string }).message);
      expect(retryAfter).toBeGreaterThan(0);
      expect(fake.requests().map((r) => [r.principalId, r.status])).toEqual([
        [userId, 200],
        [userId, 429],
      ]);
      const reachedBefore = fake.requestCount();

      // Every other replica refuses from the shared block, before reaching Cloudflare.
      for (let i = 1; i < REPLICAS; i++) {
        const other = await execute(replica(i), identifier, requestsCode(`/zones/${zoneId}`, 1, 1));
        expect(other.error, JSON.stringify(other.error)).toBeUndefined();
        const [refusal] = other.data ?? [];
        expect(refusal).toMatchObject({ code: 'rate_limited', message: expect.stringContaining('429') });
        const wait = waitSeconds((refusal as { message: string }).message);
        expect(wait).toBeGreaterThan(0);
        expect(wait).toBeLessThanOrEqual(retryAfter!);
      }
      expect(fake.requestCount()).toBe(reachedBefore);
      expect(await auditCount({ identifier, kind: 'upstream_request', outcome: 'rate_limited' })).toBe(
        REPLICAS,
      );
    } finally {
      fake.setBudget(null);
    }
  }, 120_000);
});
