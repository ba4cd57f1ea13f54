import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateKeyRing } from '@warden/kms';
import { createBudgetRedisClient, windowKeys } from '@warden/ratelimit';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, FakeRequestLogEntry, TestDatabase } from '@warden/testing';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { SPEC_PATH } from './test-support/paths.ts';

/*
 * The upstream budget across four connector processes sharing one Redis, against the fake
 * Cloudflare with its limits scaled down so that a five-minute window takes seconds:
 * 60 requests per 6 s per user, a 2 s lockout after an excess, 40 requests per second per IP.
 * Warden runs with the same figures (CLOUDFLARE_BUDGET=60/6, CLOUDFLARE_EGRESS_LIMIT=40).
 */
const REPLICAS = 4;
const LIMIT = 60;
const WINDOW_S = 6;
const LOCKOUT_S = 2;
const EGRESS = 40;
const RUN_WINDOWS = 5;

type RequestOutcome = 'ok' | { readonly code: string; readonly message: string };

interface ExecuteResponse {
  readonly data: RequestOutcome[] | null;
  readonly error?: { readonly code: string; readonly message: string };
  readonly execution_id: string;
}

/** Sandbox code making `rounds` bursts of `perRound` requests at once, returning each outcome. */
function burstCode(path: string, rounds: number, perRound: number): string {
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

/** The most requests the log shows in any `windowMs` (each entry opens a window). */
function maxInAnyWindow(entries: readonly FakeRequestLogEntry[], windowMs: number): number {
  const times = entries.map((e) => e.at.getTime()).sort((a, b) => a - b);
  let max = 0;
  let from = 0;
  for (let to = 0; to < times.length; to++) {
    while (times[to]! - times[from]! >= windowMs) from++;
    max = Math.max(max, to - from + 1);
  }
  return max;
}

describe('the upstream budget across four connector processes sharing Redis', () => {
  let db: TestDatabase;
  let fake: FakeCloudflare;
  let redis: Redis;
  const replicas: ConnectorProcess[] = [];
  const tempDirs: string[] = [];
  const principals: string[] = [];
  const adminToken = randomBytes(32).toString('hex');
  const egressPool = `budget-test-${randomBytes(6).toString('hex')}`;
  /** This test's own Redis namespace (every key, channel and queue of its replicas). */
  const redisPrefix = `test:budget:${randomBytes(6).toString('hex')}`;
  let apiKey: string;

  const replica = (index: number): ConnectorProcess => replicas[index % REPLICAS]!;
  const logs = () => replicas.map((r) => r.output()).join('\n');

  async function call(
    target: ConnectorProcess,
    method: 'GET' | 'POST' | 'PATCH',
    urlPath: string,
    token: string,
    body?: unknown,
  ): Promise<{ status: number; json: unknown; text: string; retryAfter: number }> {
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
    return { status: res.status, json, text, retryAfter: Number(res.headers.get('retry-after') ?? 1) };
  }

  /** A fresh Cloudflare user with `tokens` tokens, each connected under its own identifier. */
  async function connectUser(
    key: string,
    name: string,
    tokens: number,
  ): Promise<{ userId: string; zoneId: string; identifiers: string[]; accountIds: string[] }> {
    const user = fake.state.createUser({ email: `${name}@example.com` });
    const account = fake.state.createAccount({ name: `${name} account`, members: [user.id] });
    const zone = fake.state.createZone({ accountId: account.id, name: `${name}.example.com` });
    const identifiers: string[] = [];
    const accountIds: string[] = [];
    for (let i = 0; i < tokens; i++) {
      const token = fake.state.createUserToken({
        userId: user.id,
        // user.read lets verification find the user, so the principal is cf:user:<id>.
        permissions: ['com.cloudflare.api.user.read', '#zone:read'],
      });
      const identifier = `${name}-${i}`;
      // Verification passes the egress budget like every upstream request: when it is busy,
      // Warden says when to retry (429 + Retry-After), as a client would.
      let res = await call(replica(0), 'POST', '/api/v1/connected_accounts', key, {
        identifier,
        authorization: { type: 'api_token', api_token: token.value },
      });
      for (let attempt = 0; res.status === 429 && attempt < 20; attempt++) {
        await sleep(res.retryAfter * 1000);
        res = await call(replica(0), 'POST', '/api/v1/connected_accounts', key, {
          identifier,
          authorization: { type: 'api_token', api_token: token.value },
        });
      }
      expect(res.status, res.text).toBe(201);
      identifiers.push(identifier);
      accountIds.push((res.json as { connected_account: { id: string } }).connected_account.id);
    }
    principals.push(`cf:user:${user.id}`);
    return { userId: user.id, zoneId: zone.id, identifiers, accountIds };
  }

  async function execute(
    target: ConnectorProcess,
    key: string,
    identifier: string,
    code: string,
  ): Promise<RequestOutcome[]> {
    const res = await call(target, 'POST', '/api/v1/execute_tool', key, {
      tool_name: 'cloudflare_execute',
      identifier,
      params: { code },
    });
    expect(res.status, res.text).toBe(200);
    const body = res.json as ExecuteResponse;
    expect(body.error, `${JSON.stringify(body.error)}\n${logs()}`).toBeUndefined();
    return body.data ?? [];
  }

  /**
   * Executes `code` on `target` over and over until `until` (epoch ms). After an execution whose
   * requests were all refused the loop pauses a little, so that a full window does not make it
   * spin; a request that arrives shortly before the window frees waits for it inside Warden.
   */
  async function loop(
    target: ConnectorProcess,
    key: string,
    identifier: string,
    code: string,
    until: number,
    refusedAt: number[] = [],
    refusedWhen: (o: Exclude<RequestOutcome, 'ok'>) => boolean = () => true,
  ): Promise<RequestOutcome[]> {
    const outcomes: RequestOutcome[] = [];
    while (Date.now() < until) {
      const batch = await execute(target, key, identifier, code);
      outcomes.push(...batch);
      const now = Date.now();
      for (const o of batch)
        if (o !== 'ok' && o.code === 'rate_limited' && refusedWhen(o)) refusedAt.push(now);
      if (!batch.includes('ok')) await sleep(150);
    }
    return outcomes;
  }

  function refusalsOnly(outcomes: readonly RequestOutcome[]): void {
    const other = outcomes.filter((o) => o !== 'ok' && o.code !== 'rate_limited');
    expect(other, `requests that failed other than by the budget:\n${logs()}`).toEqual([]);
  }

  async function createTenant(name: string): Promise<string> {
    const tenant = await call(replica(0), 'POST', '/admin/v1/tenants', adminToken, { name });
    expect(tenant.status, tenant.text).toBe(201);
    return (tenant.json as { api_key: string }).api_key;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
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
        CLOUDFLARE_BUDGET: `${LIMIT}/${WINDOW_S}`,
        REDIS_KEY_PREFIX: redisPrefix,
        // Four replicas and 50 sandboxes share two cores here: a stalled event loop is not Redis down.
        REDIS_COMMAND_TIMEOUT_MS: '5000',
        CLOUDFLARE_EGRESS_LIMIT: String(EGRESS),
        // Its own egress window: the shared Redis must not mix this test's with anyone's.
        CLOUDFLARE_EGRESS_POOL: egressPool,
        WARDEN_REPLICAS: String(REPLICAS),
        SANDBOX_POOL_SIZE: '1',
        // A child per tenant ready (execute children serve one tenant at a time): the egress
        // test's five tenants must contend for egress, not wait for a sandbox.
        SANDBOX_SPARE_CHILDREN: '5',
        LOG_LEVEL: 'warn',
      });
    };
    // The first replica prepares the database alone (migrations, audit partitions), as a
    // deployment's first instance would; the rest then start together.
    replicas.push(await start(0));
    const started = await Promise.allSettled(Array.from({ length: REPLICAS - 1 }, (_, i) => start(i + 1)));
    for (const result of started) if (result.status === 'fulfilled') replicas.push(result.value);
    const failed = started.filter((r) => r.status === 'rejected');
    if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason;
    apiKey = await createTenant('Budget tenant');
  }, 240_000);

  afterAll(async () => {
    const stops = await Promise.allSettled(replicas.map((r) => r.stop()));
    await fake?.close();
    if (redis) {
      const keys = principals.flatMap((p) =>
        (['rest', 'graphql'] as const).flatMap((kind) =>
          Object.values(windowKeys(`${redisPrefix}:rl`, p, kind)),
        ),
      );
      keys.push(...(await redis.keys(`{${redisPrefix}:rl:egress:${egressPool}}*`)));
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    await db?.drop();
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    for (const stop of stops) if (stop.status === 'rejected') throw stop.reason;
  }, 120_000);

  /** Fake limits for the per-user tests; set after connecting, which starts every window afresh. */
  function scaledLimits(): void {
    fake.setLimits({
      budget: { requests: LIMIT, windowSeconds: WINDOW_S },
      graphql: null,
      perIpPerSecond: EGRESS,
      lockoutSeconds: LOCKOUT_S,
    });
    fake.clearRequests();
  }

  it(`bursts from 3 tokens of one user over ${REPLICAS} replicas for ${RUN_WINDOWS} windows: no 429, at least 95 % of what the window allows`, async () => {
    const { userId, zoneId, identifiers, accountIds } = await connectUser(apiKey, 'race', 3);
    scaledLimits();
    const code = burstCode(`/zones/${zoneId}`, 3, 5);
    const until = Date.now() + (RUN_WINDOWS + 0.5) * WINDOW_S * 1000;
    const results = await Promise.all(
      replicas.flatMap((target) =>
        identifiers.map((identifier) => loop(target, apiKey, identifier, code, until)),
      ),
    );
    for (const r of replicas) r.assertRunning();
    const outcomes = results.flat();
    refusalsOnly(outcomes);

    const reached = fake.requests().filter((r) => r.principalId === userId);
    expect(
      reached.filter((r) => r.status !== 200),
      'requests Cloudflare refused',
    ).toEqual([]);
    expect(fake.requests().filter((r) => r.status === 429)).toEqual([]);
    expect(maxInAnyWindow(reached, WINDOW_S * 1000)).toBeLessThanOrEqual(LIMIT);
    expect(maxInAnyWindow(fake.requests(), 1000)).toBeLessThanOrEqual(EGRESS);
    // Efficiency: in the first RUN_WINDOWS windows from the first request, the fake's window
    // allows at most RUN_WINDOWS × LIMIT.
    const t0 = Math.min(...reached.map((r) => r.at.getTime()));
    const inRun = reached.filter((r) => r.at.getTime() < t0 + RUN_WINDOWS * WINDOW_S * 1000).length;
    expect(inRun, `${inRun} of ${RUN_WINDOWS * LIMIT}`).toBeGreaterThanOrEqual(
      Math.ceil(0.95 * RUN_WINDOWS * LIMIT),
    );
    expect(outcomes.filter((o) => o === 'ok')).toHaveLength(reached.length);

    // Refusals say which budget refused and when to retry.
    const refusal = outcomes.find((o) => o !== 'ok' && o.message.includes('API budget'));
    expect(refusal).toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(
        /^the Cloudflare API budget of this Cloudflare user \(60 requests per 6 s\) is used up; retry in \d+ s$/,
      ),
    });

    // The account shows both budgets of its principal.
    const account = await call(replica(1), 'GET', `/api/v1/connected_accounts/${accountIds[0]}`, apiKey);
    expect(account.status, account.text).toBe(200);
    expect(
      (account.json as { connected_account: { rate_budget: unknown } }).connected_account.rate_budget,
    ).toMatchObject({
      principal: `cf:user:${userId}`,
      capacity: LIMIT,
      window_seconds: WINDOW_S,
      remaining: expect.any(Number),
      blocked_until: null,
      cloudflare_binding: expect.any(Boolean),
      graphql: { capacity: 320, window_seconds: 300, remaining: 320, next_refill_at: null },
    });
    const metrics = await fetch(`${replica(2).url}/metrics`).then((r) => r.text());
    expect(metrics).toMatch(/^warden_upstream_refusals_total\{budget="rest",reason="window"\} [1-9]/m);
    expect(metrics).toMatch(/^warden_egress_queue_wait_seconds_count [1-9]/m);
  }, 180_000);

  it("follows Cloudflare's Ratelimit header while the engineer uses the same quota directly: no 429", async () => {
    // Limits first: Cloudflare counts the verification of the 3 tokens, as Warden does (a
    // window Cloudflare forgot and Warden did not would understate the engineer's use).
    scaledLimits();
    const { userId, zoneId, identifiers } = await connectUser(apiKey, 'shared', 3);
    const direct = fake.state.createUserToken({ userId, permissions: ['#zone:read'] });
    fake.clearRequests();
    const code = burstCode(`/zones/${zoneId}`, 3, 5);
    const end = Date.now() + RUN_WINDOWS * WINDOW_S * 1000;
    const outcomes: RequestOutcome[] = [];
    let directRequests = 0;
    while (Date.now() < end) {
      // The agents burst for a while...
      const until = Date.now() + 3000;
      const results = await Promise.all(
        replicas.flatMap((target) =>
          identifiers.map((identifier) => loop(target, apiKey, identifier, code, until)),
        ),
      );
      outcomes.push(...results.flat());
      // ...then, while they are idle, the engineer's own scripts use 8 requests as soon as the
      // window has them: Warden learns of those only from Cloudflare's headers.
      const deadline = Date.now() + WINDOW_S * 1000;
      while ((fake.quota({ userId })?.remaining ?? 0) < 8 && Date.now() < deadline) await sleep(50);
      const left = fake.quota({ userId })?.remaining ?? 0;
      for (let i = 0; i < Math.min(8, left); i++) {
        const res = await fetch(`${fake.url}/zones/${zoneId}`, {
          headers: { authorization: `Bearer ${direct.value}` },
        });
        expect(res.status).toBe(200);
        directRequests++;
      }
      // Longer than Warden's probe delay (1 s): its next burst starts by asking Cloudflare.
      await sleep(1200);
    }
    refusalsOnly(outcomes);
    expect(directRequests).toBeGreaterThan(0);
    expect(
      fake.requests().filter((r) => r.status === 429),
      'Cloudflare answered 429',
    ).toEqual([]);
    const reached = fake.requests().filter((r) => r.principalId === userId);
    expect(maxInAnyWindow(reached, WINDOW_S * 1000)).toBeLessThanOrEqual(LIMIT);
    // Warden's own window would have allowed these: Cloudflare's figure is what held them back.
    expect(
      outcomes.some(
        (o) => o !== 'ok' && o.message.includes('Cloudflare reports the API quota of this Cloudflare user'),
      ),
      "no request was held back by Cloudflare's figure",
    ).toBe(true);
  }, 180_000);

  it("honours an upstream 429's Retry-After on every replica without calling Cloudflare", async () => {
    const { userId, zoneId, identifiers } = await connectUser(apiKey, 'throttled', 1);
    const direct = fake.state.createUserToken({ userId, permissions: ['#zone:read'] });
    fake.setLimits({ budget: { requests: 1, windowSeconds: 600 }, lockoutSeconds: 600 });
    // The engineer uses the whole quota before the agent's first request: Warden cannot know.
    expect(
      (await fetch(`${fake.url}/zones/${zoneId}`, { headers: { authorization: `Bearer ${direct.value}` } }))
        .status,
    ).toBe(200);
    fake.clearRequests();
    const identifier = identifiers[0]!;
    const [throttled] = await execute(replica(0), apiKey, identifier, burstCode(`/zones/${zoneId}`, 1, 1));
    expect(throttled).toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(/retry after 600 s/),
    });
    expect(fake.requests().map((r) => [r.principalId, r.status])).toEqual([[userId, 429]]);

    // Every other replica refuses from the shared block, before reaching Cloudflare.
    for (let i = 1; i < REPLICAS; i++) {
      const [refusal] = await execute(replica(i), apiKey, identifier, burstCode(`/zones/${zoneId}`, 1, 1));
      expect(refusal).toMatchObject({
        code: 'rate_limited',
        message: expect.stringMatching(
          /^Cloudflare asked to slow down \(429\) for this Cloudflare user; retry in \d+ s$/,
        ),
      });
    }
    expect(fake.requests()).toHaveLength(1);
  }, 120_000);

  it("FIXED (an attack of session 20): an endpoint's own 429 without Retry-After blocks the user for a second, not Cloudflare's five-minute lockout", async () => {
    // A 429 that is not the API-wide limit's (no Retry-After, no code 971): Workers KV writes to
    // one key, a purge rate. It used to block every request of the user on every replica for 300 s.
    fake.setLimits({ budget: null, graphql: null, perIpPerSecond: null });
    const { zoneId, identifiers } = await connectUser(apiKey, 'endpoint-429', 1);
    const identifier = identifiers[0]!;
    fake.clearRequests();
    fake.faults.failNext(1, 429);
    try {
      const [throttled] = await execute(replica(0), apiKey, identifier, burstCode(`/zones/${zoneId}`, 1, 1));
      expect(throttled).toMatchObject({
        code: 'rate_limited',
        message: expect.stringMatching(/retry after 1 s$/),
      });
      await sleep(1_500);
      // Cloudflare would take the next request, and gets it, from another replica too.
      expect(await execute(replica(1), apiKey, identifier, burstCode(`/zones/${zoneId}`, 1, 2))).toEqual([
        'ok',
        'ok',
      ]);
      expect(fake.requests().map((r) => r.status)).toEqual([429, 200, 200]);
    } finally {
      fake.faults.reset();
    }
  }, 120_000);

  it("FIXED (an attack of session 20): requests Cloudflare does not count (a route it does not have, a 429) leave the user's budget as it was", async () => {
    fake.setLimits({ budget: null, graphql: null, perIpPerSecond: null });
    const { zoneId, identifiers, accountIds } = await connectUser(apiKey, 'uncounted', 1);
    const identifier = identifiers[0]!;
    const remaining = async () => {
      const res = await call(replica(0), 'GET', `/api/v1/connected_accounts/${accountIds[0]}`, apiKey);
      return (res.json as { connected_account: { rate_budget: { remaining: number } } }).connected_account
        .rate_budget.remaining;
    };
    const before = await remaining();
    const noRoute = await execute(
      replica(0),
      apiKey,
      identifier,
      burstCode('/zones/no-such-route/x/y', 1, 4),
    );
    expect(noRoute.map((o) => (typeof o === 'string' ? o : o.code))).toEqual(Array(4).fill('http_404'));
    expect(await remaining()).toBe(before);
    fake.faults.failNext(1, 429, { retryAfterSeconds: 1 });
    try {
      await execute(replica(1), apiKey, identifier, burstCode(`/zones/${zoneId}`, 1, 1));
    } finally {
      fake.faults.reset();
    }
    // Once the 429's block is over (it shows no place left meanwhile).
    await sleep(1_200);
    expect(await remaining()).toBe(before);
  }, 120_000);

  it('never exceeds the per-IP limit with 50 principals of 5 tenants, one tenant flooding, each contending tenant getting at least 80 % of its max-min share', async () => {
    const TENANTS = 5;
    const PER_TENANT = 10;
    // Connecting verifies each credential upstream (through the egress budget, and charged to the
    // user's budget once verification has named the user): the fake's own limits are off meanwhile,
    // so set-up cannot trip them.
    fake.setLimits({ budget: null, graphql: null, perIpPerSecond: null });
    const tenants: Array<{
      key: string;
      users: Array<{ userId: string; zoneId: string; identifier: string }>;
    }> = [];
    for (let t = 0; t < TENANTS; t++) {
      const key = await createTenant(`Egress tenant ${t}`);
      // Tenants may only lower the deployment's budget; ten users of one tenant together can send
      // far more than the egress limit, so the egress budget is still the one under test.
      const users = [];
      for (let u = 0; u < PER_TENANT; u++) {
        const { userId, zoneId, identifiers } = await connectUser(key, `egress-${t}-${u}`, 1);
        users.push({ userId, zoneId, identifier: identifiers[0]! });
      }
      tenants.push({ key, users });
    }
    // Cloudflare reports every user's quota (far above what this test sends), as it always does:
    // without its header Warden lets one request of a user out at a time to learn it.
    fake.setLimits({
      budget: { requests: 1_000_000, windowSeconds: 300 },
      graphql: null,
      perIpPerSecond: EGRESS,
      lockoutSeconds: LOCKOUT_S,
    });
    fake.clearRequests();

    const started = Date.now();
    // 20 s of load (18 steady): on a starved machine 10 s gave about 24 requests per tenant, so one
    // request either way moved a share by 4 % (CI once: 0.798 against the 0.8 asked).
    const until = started + 20_000;
    let n = 0;
    const refusedAt = tenants.map((): number[] => []);
    const results = await Promise.all(
      tenants.flatMap(({ key, users }, t) =>
        users.map(({ zoneId, identifier }) =>
          // Tenant 0 floods: bursts of 10 where the others send 2.
          loop(
            replica(n++),
            key,
            identifier,
            burstCode(`/zones/${zoneId}`, 3, t === 0 ? 10 : 2),
            until,
            refusedAt[t],
            // Refused by the egress budget (not by a user's own window or its probe).
            (o) => o.message.startsWith("Warden's egress budget"),
          ),
        ),
      ),
    );
    for (const r of replicas) r.assertRunning();
    refusalsOnly(results.flat());
    expect(
      fake.requests().filter((r) => r.status === 429),
      'Cloudflare answered 429',
    ).toEqual([]);
    expect(maxInAnyWindow(fake.requests(), 1000)).toBeLessThanOrEqual(EGRESS);

    // Fairness under contention: each tenant's share of what went through, the first and last
    // second left out, against its max-min fair share (a tenant never refused by the egress budget
    // got all it asked for; the refused ones share the rest equally).
    const tenantOf = new Map(tenants.flatMap(({ users }, t) => users.map((u) => [u.userId, t] as const)));
    const inSteady = (at: number) => at >= started + 1000 && at < until - 1000;
    const steady = fake.requests().filter((r) => r.status === 200 && inSteady(r.at.getTime()));
    const perTenant = Array.from(
      { length: TENANTS },
      (_, t) => steady.filter((r) => tenantOf.get(r.principalId ?? '') === t).length,
    );
    const refused = refusedAt.map((times) => times.filter(inSteady).length);
    const contending = perTenant.filter((_, t) => (refused[t] ?? 0) > 0);
    const satisfied = perTenant.reduce((sum, count, t) => sum + ((refused[t] ?? 0) > 0 ? 0 : count), 0);
    const fair = (steady.length - satisfied) / Math.max(1, contending.length);
    const worst = Math.min(...contending.map((count) => count / fair));
    console.log(
      `egress fairness: sent (${perTenant.join(', ')}), refused (${refused.join(', ')}) of ${steady.length}; worst refused tenant ${worst.toFixed(2)} of its fair share`,
    );
    // The egress limit was contended (someone was refused by it), so fairness can be judged. The
    // flooder is usually the one refused most, but on a starved machine its bursts of 10 ran no
    // faster than the others' (CI once: 9 sent and never refused, the others refused 3-7 times).
    expect(
      refused.reduce((sum, count) => sum + count, 0),
      'requests refused by the egress budget in the steady seconds',
    ).toBeGreaterThan(0);
    expect(
      worst,
      'the worst-served contending tenant, as a share of its max-min fair share',
    ).toBeGreaterThanOrEqual(0.8);
  }, 300_000);
});
