import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { zoneTenant } from './test-support/fake-user.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

/** The value of one series in a Prometheus text exposition, 0 when it is not there yet. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/**
 * /metrics shows what a tool call waits on besides its own code: how long Cloudflare took to
 * answer each request (by status class) and how long each audit append took to commit.
 */
describe('/metrics: Cloudflare answers and audit commits, timed', () => {
  let cf: FakeCloudflare;
  let t: TestApp;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  const scrape = async () => (await t.app.inject({ method: 'GET', url: '/metrics' })).body;

  it("counts and times an execute's requests by status class and its audit appends, with no id in a label", async () => {
    const tenant = await zoneTenant(t, cf, 'timed');
    const before = await scrape();
    const res = await t.execute(
      tenant.apiKey,
      'timed',
      `async () => {
        await cloudflare.request({ method: 'GET', path: '/zones/${tenant.zoneId}' });
        try {
          await cloudflare.request({ method: 'GET', path: '/zones/00000000000000000000000000000000' });
        } catch {}
        return 'done';
      }`,
    );
    expect(res.json()).toMatchObject({ data: 'done' });
    const after = await scrape();
    const delta = (name: string) => series(after, name) - series(before, name);

    expect(delta('warden_upstream_request_duration_seconds_count{status="2xx"}')).toBe(1);
    expect(delta('warden_upstream_request_duration_seconds_count{status="4xx"}')).toBe(1);
    expect(delta('warden_upstream_request_duration_seconds_sum{status="2xx"}')).toBeGreaterThan(0);
    // Two intents committed before their requests, and the call's own record at its end (an
    // outcome rides with the next write, or on its own if that comes late).
    expect(delta('warden_audit_append_duration_seconds_count{outcome="committed"}')).toBeGreaterThanOrEqual(
      3,
    );
    expect(delta('warden_audit_append_duration_seconds_sum{outcome="committed"}')).toBeGreaterThan(0);
    expect(series(after, 'warden_audit_append_duration_seconds_count{outcome="failed"}')).toBe(0);

    const labels = after
      .split('\n')
      .filter((l) => /^warden_(upstream_request|audit_append)_duration_seconds/.test(l))
      .join('\n');
    for (const value of [tenant.zoneId, tenant.accountId, tenant.tenantId, tenant.token, 'timed']) {
      expect(labels).not.toContain(value);
    }
  });
});
