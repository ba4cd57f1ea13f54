import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { SPEND_WHILE_TAILING, createTailingUser } from './test-support/tailing-user.ts';

interface ExecuteBody {
  data: unknown;
  error?: { code: string; message: string };
  execution_id: string;
}

/** Cloudflare's per-user window in this file: small, so that a test can spend it. */
const CF_BUDGET = { requests: 12, windowSeconds: 300 };

/**
 * Outsider attack on issue 16's tail-delete reservation, end to end: the real service (Redis
 * windows, PostgreSQL, the sandbox pool) against the fake Cloudflare enforcing a per-user window
 * of 12 requests in 300 s with its 300 s lockout, as Cloudflare does. Each test has a Cloudflare
 * user of its own (a lockout must not leak into the next test), in a tenant of its own whose
 * budget is Cloudflare's.
 */
describe('outsider attack (issue 16): tail reservations and the API budget', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let n = 0;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20, budget: CF_BUDGET });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base, SANDBOX_TIMEOUT_MS: '20000' });
    await t.app.listen({ host: '127.0.0.1', port });
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  /** A tenant with Cloudflare's budget, connected as a Cloudflare user of its own. */
  async function tenant() {
    const name = `Tail attack ${++n}`;
    const { apiKey } = await t.createTenant(name);
    const patched = await fetch(`${base}/api/v1/settings`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ budget: `${CF_BUDGET.requests}/${CF_BUDGET.windowSeconds}` }),
    });
    expect(patched.status).toBe(200);
    const { userId, accountId, token } = createTailingUser(cf, {
      email: `attack16-${n}@example.com`,
      accountName: name,
    });
    cf.tails.script(accountId, 'api', [{ outcome: 'ok', logs: [{ message: ['hello'] }] }]);
    const connected = await t.connect(apiKey, 'bob', token);
    const account = await fetch(`${base}/api/v1/connected_accounts/${connected}`, {
      headers: { authorization: `Bearer ${apiKey}` },
    });
    const { connected_account } = (await account.json()) as {
      connected_account: { rate_budget: { principal: string } };
    };
    const principal = connected_account.rate_budget.principal;
    const run = async (code: string, signal?: AbortSignal): Promise<ExecuteBody> => {
      const res = await fetch(`${base}/api/v1/execute_tool`, {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tool_name: 'cloudflare_execute', identifier: 'bob', params: { code } }),
        ...(signal ? { signal } : {}),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as ExecuteBody;
    };
    /** The engineer's dashboard (or another tool) spending the same user's Cloudflare budget. */
    const dashboard = async (requests: number) => {
      for (let i = 0; i < requests; i++) {
        const res = await fetch(`${cf.url}/user`, { headers: { authorization: `Bearer ${token}` } });
        expect(res.status).toBe(200);
      }
    };
    /** Requests of this user the fake counted (accepted), and those it answered 429 for its budget. */
    const seen = () => {
      const mine = cf.requests().filter((r) => r.principalId === userId);
      return {
        accepted: mine.filter((r) => r.limitedBy === null).length,
        overBudget: mine.filter((r) => r.limitedBy === 'budget'),
      };
    };
    /** What Warden's window of this principal counts now. */
    const used = async () =>
      (
        await t.container.rateBudget.status(principal, {
          capacity: CF_BUDGET.requests,
          windowSeconds: CF_BUDGET.windowSeconds,
        })
      ).rest.used;
    // Connecting sent requests of its own: what Warden counts beyond Cloudflare's count from here on.
    const offset = (await used()) - seen().accepted;
    /** Places Warden's window holds that Cloudflare never counted (a leaked reservation): 0. */
    const leaked = async () => (await used()) - seen().accepted - offset;
    return { run, dashboard, seen, leaked, userId };
  }

  const newSessions = (before: number) => cf.tails.sessions().slice(before);

  it("HELD (control): with only Warden's requests in the user's count, the reserved delete goes within Cloudflare's quota", async () => {
    const bob = await tenant();
    const before = cf.tails.sessions().length;
    const res = await bob.run(SPEND_WHILE_TAILING);
    expect(res.error).toBeUndefined();
    expect(res.data).toMatchObject({ refused: 'rate_limited', deleted: true });
    expect(newSessions(before)[0]?.deletedAt).not.toBeNull();
    expect(bob.seen().overBudget).toEqual([]);
  });

  // Found by the outsider attack (issue 16): with the dashboard's requests in Cloudflare's count,
  // settle counted the held reservation as sent, the code got its place, and the reserved delete
  // was Cloudflare's 13th request of 12: answered 429 (Retry-After 300), the tail left alive and
  // the user locked out of the API for 5 minutes.
  it("HELD: once the dashboard used some of the user's Cloudflare budget, the code still cannot spend the delete's place: the tail is deleted within Cloudflare's quota", async () => {
    const bob = await tenant();
    await bob.dashboard(4);
    const before = cf.tails.sessions().length;
    const res = await bob.run(SPEND_WHILE_TAILING);
    expect(res.error).toBeUndefined();
    const data = res.data as { sent: number; refused: string; deleted: boolean; tailId: string };
    expect(data.refused).toBe('rate_limited');
    expect(data.deleted).toBe(true);
    const [session] = newSessions(before);
    expect(session?.id).toBe(data.tailId);
    expect(session?.deletedAt).not.toBeNull();
    expect(bob.seen().overBudget).toEqual([]);
  });

  it('HELD: many concurrent tails never take more than the window holds; every tail created is deleted and Cloudflare never answers 429', async () => {
    const bob = await tenant();
    const before = cf.tails.sessions().length;
    const res = await bob.run(`async () => {
      const runs = await Promise.allSettled(Array.from({ length: 10 }, () => tail.worker({ script: 'api', seconds: 1 })));
      return runs.map((r) => r.status === 'fulfilled' ? { deleted: r.value.deleted } : { code: r.reason.code });
    }`);
    expect(res.error).toBeUndefined();
    const runs = res.data as Array<{ deleted?: boolean; code?: string }>;
    const created = newSessions(before);
    expect(created.length).toBeGreaterThan(0);
    // Two requests a tail: at most half the window's 12 places, less what connecting spent.
    expect(created.length).toBeLessThanOrEqual(CF_BUDGET.requests / 2);
    expect(created.every((s) => s.deletedAt !== null)).toBe(true);
    expect(runs.filter((r) => r.deleted === true)).toHaveLength(created.length);
    // The rest refused with nothing sent: the budget (rate_limited), or the sandbox's cap on an
    // execution's total tail time (invalid_request, MAX_TAIL_EXTENSION_MS).
    expect(
      runs
        .filter((r) => r.code !== undefined)
        .every((r) => ['rate_limited', 'invalid_request'].includes(r.code!)),
      JSON.stringify(runs),
    ).toBe(true);
    expect(
      runs.some((r) => r.code === 'rate_limited'),
      JSON.stringify(runs),
    ).toBe(true);
    expect(bob.seen().overBudget).toEqual([]);
    // No reservation is left behind: Warden's window counts exactly what Cloudflare counted.
    expect(await bob.leaked()).toBe(0);
  });

  it('HELD: no reservation leaks when the create fails, when the code returns while the create is in flight, or when the caller aborts mid-tail', async () => {
    const bob = await tenant();
    // The create answered 404 (no such Worker): its reservation goes back.
    const missing = await bob.run(
      `async () => { try { await tail.worker({ script: 'nope', seconds: 2 }); } catch (e) { return e.code; } }`,
    );
    expect(missing.data).toBe('not_found');
    expect(await bob.leaked()).toBe(0);

    // The code returns while the create is on its way: the tail is deleted once it is answered.
    const before = cf.tails.sessions().length;
    cf.faults.setLatencyMs(600);
    let returned: ExecuteBody;
    try {
      returned = await bob.run(
        `async () => { tail.worker({ script: 'api', seconds: 5 }).catch(() => {}); const end = Date.now() + 100; while (Date.now() < end) {} return 'done'; }`,
      );
    } finally {
      cf.faults.setLatencyMs(0);
    }
    expect(returned.data).toBe('done');
    await expect
      .poll(() => newSessions(before).every((s) => s.deletedAt !== null), { timeout: 5_000 })
      .toBe(true);
    expect(newSessions(before)).toHaveLength(1);
    await expect.poll(() => bob.leaked(), { timeout: 5_000 }).toBe(0);

    // The caller goes away mid-tail.
    const aborted = cf.tails.sessions().length;
    const controller = new AbortController();
    const pending = bob.run(`async () => tail.worker({ script: 'api', seconds: 20 })`, controller.signal);
    await expect
      .poll(() => newSessions(aborted)[0]?.connections ?? 0, { timeout: 5_000, interval: 20 })
      .toBe(1);
    controller.abort();
    await expect(pending).rejects.toThrow();
    await expect
      .poll(() => newSessions(aborted)[0]?.deletedAt ?? null, { timeout: 5_000, interval: 50 })
      .not.toBeNull();
    await expect.poll(() => bob.leaked(), { timeout: 5_000 }).toBe(0);
    expect(bob.seen().overBudget).toEqual([]);
  });
});
