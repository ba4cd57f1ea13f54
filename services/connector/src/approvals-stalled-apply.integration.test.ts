import { describe, expect, it } from 'vitest';
import { startFakeCloudflare, startTcpProxy } from '@warden/testing';
import { eventually } from './test-support/http-receiver.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'];

interface Approval {
  id: string;
  status: string;
  plan: unknown[];
  results: Array<{
    seq: number;
    status: number | null;
    success: boolean;
    error: { code: string } | null;
  }> | null;
}

/**
 * Two replicas on one PostgreSQL and Redis; replica A is stopped in the middle of an apply (its
 * database cut while its first write is with Cloudflare, then shut down). Replica B sees the
 * apply's lease lapse and settles it as interrupted within the lease (seconds, not 15 minutes):
 * the write that went out reads as sent with its outcome unknown, the rest as not sent, and
 * nothing is ever sent again.
 */
describe('write approvals: a replica stopped mid-apply', () => {
  it('is settled by another replica once its lease lapses, its sent write reported unknown, never resent', async () => {
    const cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const pgUrl = new URL(process.env.DATABASE_URL ?? '');
    const proxy = await startTcpProxy({ host: pgUrl.hostname, port: Number(pgUrl.port || 5432) });
    const env = { CLOUDFLARE_API_BASE: cf.url, APPROVAL_APPLY_LEASE_SECONDS: '2' };
    // B owns the database (A's shutdown drops nothing); A reaches it through a proxy to cut.
    const b = await startTestApp(env);
    const a = await startTestApp(env, { replicaOf: b, viaProxyPort: proxy.port });
    let aClosed = false;
    try {
      const tenant = await b.createTenant('Approvals, stalled apply');
      const issued = await b.app.inject({
        method: 'POST',
        url: `/admin/v1/tenants/${tenant.tenantId}/api_keys`,
        headers: { authorization: `Bearer ${b.adminToken}` },
      });
      const approverKey = (issued.json() as { api_key: string }).api_key;
      for (const t of [a, b]) {
        t.secrets.add(approverKey);
        t.secrets.add(tenant.apiKey);
      }
      const call = (
        t: typeof a,
        method: 'GET' | 'POST' | 'PUT',
        url: string,
        payload?: unknown,
        key = tenant.apiKey,
      ) =>
        t.app.inject({
          method,
          url,
          headers: { authorization: `Bearer ${key}` },
          ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}),
        });
      const user = cf.state.createUser({ email: 'stall@example.com' });
      const account = cf.state.createAccount({ name: 'Stall Co', members: [user.id] });
      const zoneId = cf.state.createZone({ accountId: account.id, name: 'stall.example' }).id;
      const token = cf.state.createUserToken({ userId: user.id, permissions: PERMISSIONS });
      a.secrets.add(token.value);
      b.secrets.add(token.value);
      await b.connect(tenant.apiKey, 'sam', token.value);
      const policy = {
        rules: [{ effect: 'approve', methods: ['POST', 'PUT', 'PATCH', 'DELETE'], path: '/zones/**' }],
      };
      expect((await call(b, 'PUT', '/api/v1/policy', policy)).statusCode).toBe(200);
      const planned = await call(b, 'POST', '/api/v1/execute_tool', {
        tool_name: 'cloudflare_execute',
        identifier: 'sam',
        params: {
          code: `async () => { for (let i = 0; i < 3; i++) await cloudflare.request({ method: 'POST', path: '/zones/${zoneId}/dns_records', body: { type: 'TXT', name: 'stall-' + i + '.stall.example', content: 'x' } }); return 'planned'; }`,
        },
      });
      const approval = (planned.json() as { approval: Approval }).approval;
      expect(approval.plan).toHaveLength(3);
      const writes = () => cf.requests().filter((r) => r.method === 'POST');
      cf.clearRequests();
      cf.faults.setLatencyMs(1_500);

      // Replica A approves and starts applying; while its first write is with Cloudflare it is
      // stopped (its database gone, then shut down).
      const approving = call(a, 'POST', `/api/v1/approvals/${approval.id}/approve`, {}, approverKey);
      // The first write is on its way (its write-ahead intent committed; the fake answers late).
      const trail = async () =>
        ((await call(b, 'GET', '/api/v1/audit/events?page_size=100')).json() as { events: AuditEventView[] })
          .events;
      const intents = async () =>
        (await trail()).filter(
          (e) => e.execution_id === approval.id && e.upstream?.method === 'POST' && e.outcome === 'pending',
        );
      await eventually(async () => (await intents()).length > 0, 10_000, 'the first write sent');
      await proxy.stop();
      const during = (await call(b, 'GET', `/api/v1/approvals/${approval.id}`)).json() as {
        approval: Approval;
      };
      // Its lease still holds: B does not settle an apply that may still be running.
      expect(during.approval.status).toBe('approved');
      const answer = await approving;
      expect(answer.statusCode, answer.body).toBe(503);
      await proxy.start();
      await a.close();
      aClosed = true;
      cf.faults.setLatencyMs(0);

      // Replica B settles it once the lease lapsed: seconds, not 15 minutes.
      const settled = await eventually(
        async () => {
          const res = await call(b, 'GET', `/api/v1/approvals/${approval.id}`);
          expect(res.statusCode, res.body).toBe(200);
          const read = res.json() as { approval: Approval };
          return read.approval.status === 'approved' ? null : read.approval;
        },
        10_000,
        'the stalled apply settled by replica B',
      );
      expect(settled.status).toBe('failed');
      expect(settled.results?.map((r) => [r.seq, r.status, r.success, r.error?.code ?? null])).toEqual([
        [1, null, false, 'unknown'],
        [2, null, false, 'unavailable'],
      ]);
      expect(
        (await trail()).some(
          (e) =>
            e.action === 'approval.failed' &&
            e.details?.approval_id === approval.id &&
            e.details?.interrupted === true,
        ),
      ).toBe(true);
      // The one write that went out has its write-ahead intent under the approval's id.
      expect(await intents()).toHaveLength(1);
      // Never sent twice, nor any step after it: not by B, not by approving again.
      expect(
        (await call(b, 'POST', `/api/v1/approvals/${approval.id}/approve`, {}, approverKey)).statusCode,
      ).toBe(409);
      await new Promise((resolve) => setTimeout(resolve, 2_500));
      expect(writes()).toHaveLength(1);
    } finally {
      cf.faults.setLatencyMs(0);
      await proxy.start().catch(() => undefined);
      if (!aClosed) await a.close();
      await b.close();
      await proxy.close();
      await cf.close();
    }
  }, 60_000);
});
