import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import { api, loadSpec } from './fake-cloudflare.test-helpers.ts';
import type { Credential } from './fake-cloudflare.test-helpers.ts';

describe('zone holds', () => {
  let fake: FakeCloudflare;
  let zoneId: string;
  let editor: Credential;
  let reader: Credential;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ spec: loadSpec(), budget: null });
    const alice = fake.state.createUser({ email: 'alice@example.com' });
    const acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    zoneId = fake.state.createZone({ accountId: acme.id, name: 'example.com' }).id;
    editor = { token: fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:edit'] }).value };
    reader = { token: fake.state.createUserToken({ userId: alice.id, permissions: ['#zone:read'] }).value };
  });
  afterAll(async () => {
    await fake.close();
  });

  it('takes include_subdomains from the query of the POST, never from the body', async () => {
    const before = await api(fake.url, reader, 'GET', `/zones/${zoneId}/hold`);
    expect(before.json.result).toEqual({ hold: false, include_subdomains: false });
    const fromBody = await api(fake.url, editor, 'POST', `/zones/${zoneId}/hold`, {
      body: { include_subdomains: true },
    });
    expect(fromBody.json.result).toEqual({ hold: true, include_subdomains: false });
    const fromQuery = await api(fake.url, editor, 'POST', `/zones/${zoneId}/hold?include_subdomains=true`);
    expect(fromQuery.json.result).toEqual({ hold: true, include_subdomains: true });
    const bad = await api(fake.url, editor, 'POST', `/zones/${zoneId}/hold?include_subdomains=yes`);
    expect(bad.status).toBe(400);
    const lifted = await api(
      fake.url,
      editor,
      'DELETE',
      `/zones/${zoneId}/hold?hold_after=2030-01-01T00:00:00Z`,
    );
    expect(lifted.json.result).toEqual({
      hold: false,
      include_subdomains: true,
      hold_after: '2030-01-01T00:00:00Z',
    });
    expect((await api(fake.url, reader, 'POST', `/zones/${zoneId}/hold`)).status).toBe(403);
  });
});
