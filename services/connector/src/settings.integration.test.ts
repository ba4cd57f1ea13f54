import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

interface Settings {
  budget: string;
  audit: { retention_days: number; capture_code: boolean };
}

/**
 * Tenant settings against the operator's ceilings (issue 14): a tenant may lower the deployment's
 * budget, never raise it, and `null` returns to the default; a refused change writes nothing; and
 * settings and policy written concurrently are serialized by their one owner, each change on the
 * trail from the state the previous one left; so are an identifier's policy writes, from its first.
 */
describe('tenant settings under the operator ceiling', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await startTestApp({ CLOUDFLARE_BUDGET: '100/60' });
  });
  afterAll(async () => {
    await t?.close();
  });

  const call = (apiKey: string, method: 'GET' | 'PATCH' | 'PUT' | 'DELETE', url: string, payload?: unknown) =>
    t.app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${apiKey}` },
      ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
    });
  const settingsOf = async (apiKey: string) =>
    ((await call(apiKey, 'GET', '/api/v1/settings')).json() as { settings: Settings }).settings;

  it('refuses a budget above the deployment limit (in total or by a shorter window), accepts a lower one, and null restores the default', async () => {
    const { apiKey } = await t.createTenant('Ceilings');
    const initial = await settingsOf(apiKey);
    expect(initial.budget).toBe('100/60');

    for (const budget of ['101/60', '200/60', '60/30', '2/1']) {
      const refused = await call(apiKey, 'PATCH', '/api/v1/settings', {
        budget,
        audit: { retention_days: 7 },
      });
      expect(refused.statusCode, budget).toBe(400);
      const error = (refused.json() as { error: { field: string; message: string } }).error;
      expect(error.field, budget).toBe('budget');
      expect(error.message, budget).toContain("this deployment's limit of 100/60");
      // Nothing of a refused change is written, not even its valid part.
      expect(await settingsOf(apiKey), budget).toEqual(initial);
    }

    const lowered = await call(apiKey, 'PATCH', '/api/v1/settings', { budget: '50/60' });
    expect(lowered.statusCode, lowered.body).toBe(200);
    expect((await settingsOf(apiKey)).budget).toBe('50/60');
    // The same rate over a longer window is no more than the limit allows either.
    expect((await call(apiKey, 'PATCH', '/api/v1/settings', { budget: '100/120' })).statusCode).toBe(200);
    expect((await settingsOf(apiKey)).budget).toBe('100/120');

    const reset = await call(apiKey, 'PATCH', '/api/v1/settings', { budget: null });
    expect(reset.statusCode).toBe(200);
    expect((await settingsOf(apiKey)).budget).toBe('100/60');
  });

  it('serializes concurrent settings and policy writes: all succeed, and each change starts from the one before', async () => {
    const { apiKey } = await t.createTenant('Concurrent writes');
    const writes = Array.from({ length: 24 }, (_, i) =>
      i % 3 === 0
        ? call(apiKey, 'PUT', '/api/v1/policy', {
            rules: [{ effect: 'deny', methods: ['DELETE'], path: `/zones/z${i}/**` }],
          })
        : i % 3 === 1
          ? call(apiKey, 'PATCH', '/api/v1/settings', { budget: `${10 + i}/60` })
          : call(apiKey, 'PATCH', '/api/v1/settings', { audit: { retention_days: 10 + i } }),
    );
    const answers = await Promise.all(writes);
    expect(
      answers.filter((a) => a.statusCode !== 200).map((a) => a.body),
      t.logs
        .filter((l) => l.includes('"level":50'))
        .join('\n')
        .slice(0, 3000),
    ).toEqual([]);

    const events = (
      (await call(apiKey, 'GET', '/api/v1/audit/events?kind=lifecycle&page_size=100')).json() as {
        events: AuditEventView[];
      }
    ).events
      .filter((e) => e.action === 'settings.changed' || e.action === 'policy.changed')
      .sort((a, b) => a.seq - b.seq);
    expect(events).toHaveLength(24);
    // One lock orders them: what each change found is what the previous change of the same
    // setting left (a lost update would show a `before` no change had written).
    const last = new Map<string, unknown>();
    for (const event of events) {
      const before = event.details?.before as Record<string, unknown>;
      const after = event.details?.after as Record<string, unknown>;
      for (const key of Object.keys(after)) {
        if (last.has(key)) expect(before[key], `${event.action} #${event.seq} ${key}`).toEqual(last.get(key));
        last.set(key, after[key]);
      }
    }
    // The stored state is the last change's.
    const settings = await settingsOf(apiKey);
    expect(`"${settings.budget}"`).toBe(JSON.stringify(last.get('budget')));
    const policy = (await call(apiKey, 'GET', '/api/v1/policy')).json() as { policy: unknown };
    expect(policy.policy).toEqual(last.get('policy'));
  });

  it("serializes concurrent writes of one identifier's policy, its first creation included: each change starts from the one before", async () => {
    const { apiKey } = await t.createTenant('Concurrent identity policy');
    const url = '/api/v1/identities/racer/policy';
    // A first PUT, more PUTs, DELETEs and tenant writes at once: the identifier has no policy
    // yet, so the first writers find no row to lock.
    const writes = Array.from({ length: 24 }, (_, i) =>
      i % 6 === 5
        ? call(apiKey, 'DELETE', url)
        : i % 6 === 4
          ? call(apiKey, 'PATCH', '/api/v1/settings', { budget: `${10 + i}/60` })
          : call(apiKey, 'PUT', url, {
              rules: [{ effect: 'deny', methods: ['DELETE'], path: `/zones/z${i}/**` }],
            }),
    );
    const answers = await Promise.all(writes);
    expect(answers.filter((a) => a.statusCode !== 200 && a.statusCode !== 204).map((a) => a.body)).toEqual(
      [],
    );

    const events = (
      (await call(apiKey, 'GET', '/api/v1/audit/events?kind=lifecycle&page_size=100')).json() as {
        events: AuditEventView[];
      }
    ).events
      .filter((e) => e.action === 'identity_policy.changed' || e.action === 'identity_policy.deleted')
      .sort((a, b) => a.seq - b.seq);
    // Every PUT is on the trail; a DELETE only when there was a policy to delete.
    expect(events.filter((e) => e.action === 'identity_policy.changed')).toHaveLength(16);
    let last: unknown = null;
    for (const event of events) {
      expect(event.details?.before ?? null, `${event.action} #${event.seq}`).toEqual(last);
      last = event.details?.after ?? null;
    }
    const stored = (await call(apiKey, 'GET', url)).json() as { policy: unknown };
    expect(stored.policy).toEqual(last ?? {});
  });
});
