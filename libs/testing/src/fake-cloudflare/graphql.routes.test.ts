import { ManualClock } from '@warden/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeAccount, FakeUser, FakeZone } from './fake-cloudflare.state.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';
import type { Credential } from './fake-cloudflare.test-helpers.ts';

const ZONE_QUERY = `
  query ZoneTraffic($zoneTag: string!, $from: Date!, $to: Date!) {
    viewer {
      zones(filter: { zoneTag: $zoneTag }) {
        zoneTag
        httpRequests1dGroups(limit: 10, filter: { date_geq: $from, date_leq: $to }, orderBy: [date_ASC]) {
          sum { requests bytes cachedRequests }
          dimensions { date }
        }
      }
    }
  }`;

describe('GraphQL Analytics API', () => {
  const clock = new ManualClock(new Date('2026-03-10T08:00:00Z'));
  let fake: FakeCloudflare;
  let alice: FakeUser;
  let acme: FakeAccount;
  let zone: FakeZone;
  let analytics: Credential;
  const gql = (cred: Credential, query: string, variables?: Record<string, unknown>) =>
    api(fake.url, cred, 'POST', '/graphql', { body: { query, ...(variables ? { variables } : {}) } });

  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), budget: null, clock });
    alice = fake.state.createUser({ email: 'alice@example.com' });
    acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    zone = fake.state.createZone({ accountId: acme.id, name: 'example.com' });
    fake.state.putWorkerScript({
      accountId: acme.id,
      name: 'api',
      content: "addEventListener('fetch', () => {})",
    });
    fake.state.putWorkerScript({
      accountId: acme.id,
      name: 'cron',
      content: 'export default { scheduled() {} }',
      usesModules: true,
    });
    analytics = {
      token: fake.state.createUserToken({ userId: alice.id, permissions: ['#analytics:read'] }).value,
    };
  });
  afterAll(async () => {
    await fake.close();
  });

  it('answers zone httpRequests1dGroups deterministically, one group per day', async () => {
    const variables = { zoneTag: zone.id, from: '2026-03-01', to: '2026-03-03' };
    const first = await gql(analytics, ZONE_QUERY, variables);
    expect(first.status).toBe(200);
    expect(first.json.errors).toBeNull();
    const zones = (
      first.json.data as { viewer: { zones: Array<{ zoneTag: string; httpRequests1dGroups: unknown[] }> } }
    ).viewer.zones;
    expect(zones).toHaveLength(1);
    expect(zones[0]?.zoneTag).toBe(zone.id);
    const groups = zones[0]?.httpRequests1dGroups as Array<{
      sum: { requests: number; bytes: number; cachedRequests: number };
      dimensions: { date: string };
    }>;
    expect(groups.map((g) => g.dimensions.date)).toEqual(['2026-03-01', '2026-03-02', '2026-03-03']);
    for (const g of groups) {
      expect(g.sum.requests).toBeGreaterThan(0);
      expect(g.sum.cachedRequests).toBeLessThanOrEqual(g.sum.requests);
      expect(Object.keys(g.sum).sort()).toEqual(['bytes', 'cachedRequests', 'requests']);
    }
    expect((await gql(analytics, ZONE_QUERY, variables)).json).toEqual(first.json);
  });

  it('aggregates over the selected dimensions (none selected: one group)', async () => {
    const perDay = await gql(analytics, ZONE_QUERY, {
      zoneTag: zone.id,
      from: '2026-03-01',
      to: '2026-03-03',
    });
    const total = (
      perDay.json.data as {
        viewer: { zones: Array<{ httpRequests1dGroups: Array<{ sum: { requests: number } }> }> };
      }
    ).viewer.zones[0]!.httpRequests1dGroups.reduce((n, g) => n + g.sum.requests, 0);
    const overall = await gql(
      analytics,
      `{ viewer { zones(filter: {zoneTag: "${zone.id}"}) { httpRequests1dGroups(limit: 5, filter: {date_geq: "2026-03-01", date_lt: "2026-03-04"}) { sum { requests } } } } }`,
    );
    expect(overall.json.data).toEqual({
      viewer: { zones: [{ httpRequests1dGroups: [{ sum: { requests: total } }] }] },
    });
  });

  it('answers account workersInvocationsAdaptive for the scripts in state', async () => {
    const response = await gql(
      analytics,
      `query Workers($accountTag: string!) {
        viewer {
          accounts(filter: { accountTag: $accountTag }) {
            workersInvocationsAdaptive(limit: 100, filter: { date_geq: "2026-03-09", date_leq: "2026-03-10" }, orderBy: [sum_requests_DESC]) {
              sum { requests errors subrequests }
              quantiles { cpuTimeP50 }
              dimensions { scriptName }
            }
          }
        }
      }`,
      { accountTag: acme.id },
    );
    expect(response.json.errors).toBeNull();
    const groups = (
      response.json.data as {
        viewer: {
          accounts: Array<{
            workersInvocationsAdaptive: Array<{
              sum: { requests: number; errors: number };
              dimensions: { scriptName: string };
            }>;
          }>;
        };
      }
    ).viewer.accounts[0]!.workersInvocationsAdaptive;
    expect(groups.map((g) => g.dimensions.scriptName).sort()).toEqual(['api', 'cron']);
    expect(groups[0]!.sum.requests).toBeGreaterThanOrEqual(groups[1]!.sum.requests);
    for (const g of groups) expect(g.sum.errors).toBeLessThanOrEqual(g.sum.requests);

    const one = await gql(
      analytics,
      `{ viewer { accounts(filter: {accountTag: "${acme.id}"}) { workersInvocationsAdaptive(limit: 10, filter: {scriptName: "cron"}) { dimensions { scriptName date } } } } }`,
    );
    const rows = (
      one.json.data as {
        viewer: {
          accounts: Array<{
            workersInvocationsAdaptive: Array<{ dimensions: { scriptName: string; date: string } }>;
          }>;
        };
      }
    ).viewer.accounts[0]!.workersInvocationsAdaptive;
    // Without date bounds: the last seven days up to the clock's today.
    expect(rows.map((r) => r.dimensions.date)).toEqual([
      '2026-03-04',
      '2026-03-05',
      '2026-03-06',
      '2026-03-07',
      '2026-03-08',
      '2026-03-09',
      '2026-03-10',
    ]);
    expect(new Set(rows.map((r) => r.dimensions.scriptName))).toEqual(new Set(['cron']));
  });

  it('reports GraphQL errors for unsupported queries, bad syntax and mutations', async () => {
    const unknown = await gql(
      analytics,
      `{ viewer { zones(filter: {zoneTag: "${zone.id}"}) { firewallEventsAdaptive(limit: 1) { action } } } }`,
    );
    expect(unknown.status).toBe(200);
    expect(unknown.json).toMatchObject({
      data: null,
      errors: [{ message: 'Cannot query field "firewallEventsAdaptive" on type "zone".' }],
    });
    const syntax = await gql(analytics, '{ viewer { zones( }');
    expect(syntax.json.data).toBeNull();
    expect((syntax.json as { errors: Array<{ message: string }> }).errors[0]?.message).toMatch(
      /Syntax Error/,
    );
    const mutation = await gql(analytics, 'mutation { deleteZone(id: "x") }');
    expect((mutation.json as { errors: Array<{ message: string }> }).errors[0]?.message).toMatch(/read-only/);
    const noLimit = await gql(
      analytics,
      `{ viewer { zones(filter: {zoneTag: "${zone.id}"}) { httpRequests1dGroups { sum { requests } } } } }`,
    );
    expect((noLimit.json as { errors: Array<{ message: string }> }).errors[0]?.message).toMatch(
      /argument "limit" is required/,
    );
    const notJson = await api(fake.url, analytics, 'POST', '/graphql', {
      rawBody: 'query',
      contentType: 'application/json',
    });
    expect(notJson.status).toBe(400);
  });

  it('checks the analytics permission per zone and account', async () => {
    const dnsOnly = {
      token: fake.state.createUserToken({ userId: alice.id, permissions: ['#dns_records:read'] }).value,
    };
    const denied = await gql(dnsOnly, ZONE_QUERY, { zoneTag: zone.id, from: '2026-03-01', to: '2026-03-01' });
    expect(denied.status).toBe(200);
    expect(denied.json).toMatchObject({
      data: null,
      errors: [{ message: 'not authorized for that zone', extensions: { code: 'authz' } }],
    });
    const foreign = await gql(analytics, ZONE_QUERY, {
      zoneTag: 'f'.repeat(32),
      from: '2026-03-01',
      to: '2026-03-01',
    });
    expect(foreign.json.data).toBeNull();
    const global = await gql({ email: alice.email, key: alice.globalApiKey }, ZONE_QUERY, {
      zoneTag: zone.id,
      from: '2026-03-01',
      to: '2026-03-01',
    });
    expect(global.json.errors).toBeNull();
  });
});
