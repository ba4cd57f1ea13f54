import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import { approvalsTenant } from './test-support/approvals-tenant.ts';
import type { TestApp } from './test-support/test-app.ts';
import { connectMcpClient } from './test-support/mcp-client.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

const PERMISSIONS = ['com.cloudflare.api.user.read', '#zone:read', '#dns_records:read', '#dns_records:edit'];

/** Every write under /zones waits for a person; reads run live. */
interface Write {
  seq: number;
  method: string;
  path: string;
  body: unknown;
}
interface Result {
  seq: number;
  status: number | null;
  success: boolean;
  error: { code: string; message: string } | null;
  result?: unknown;
}
interface Step {
  step: number;
  status: string;
  execution_id: string | null;
  plan_sha256: string | null;
  sends: Write[];
  sends_sha256: string | null;
  decided_by: { type: string; id: string | null } | null;
  results: Result[] | null;
  error: { code: string; message: string } | null;
}
interface Approval {
  id: string;
  status: string;
  execution_id: string;
  plan: Write[];
  plan_sha256: string;
  dependent: boolean;
  apply_in_steps: boolean;
  steps: Step[] | null;
  results: Result[] | null;
}

/**
 * Applying a dependent plan in steps (issue 15): a plan whose later write needs an earlier
 * write's result is applied one step at a time; after each approved step the agent's code runs
 * again with the real results, and its next write waits for approval as the next step.
 */
type Tenant = Awaited<ReturnType<typeof approvalsTenant<Approval>>>;

describe('write approvals applied in steps', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let tenant: { tenantId: string; apiKey: string };
  /** A second key of the tenant: the person who decides (the planning key may not). */
  let approver: { apiKey: string; id: string };
  let api: Tenant['api'];
  let connect: Tenant['connect'];
  let execute: Tenant['execute'];
  let zoneId: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url, PUBLIC_URL: base });
    await t.app.listen({ host: '127.0.0.1', port });
    ({ tenant, approver, zoneId, api, connect, execute } = await approvalsTenant<Approval>(t, cf, {
      name: 'Steps',
      permissions: PERMISSIONS,
    }));
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  /** Approves the step the approver reads now (as a person approves what they saw). */
  async function approve(id: string, comment?: string): Promise<Approval> {
    const step = (await read(id)).steps?.at(-1)?.step;
    const res = await api(
      'POST',
      `/api/v1/approvals/${id}/approve`,
      { ...(comment ? { comment } : {}), ...(step !== undefined ? { step } : {}) },
      approver.apiKey,
    );
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as { approval: Approval }).approval;
  }
  async function read(id: string): Promise<Approval> {
    const res = await api('GET', `/api/v1/approvals/${id}`);
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as { approval: Approval }).approval;
  }
  const writesSeen = () =>
    cf.requests().filter((r) => r.method !== 'GET' && r.path.startsWith(`/zones/${zoneId}`));
  async function trail(): Promise<AuditEventView[]> {
    const res = await api('GET', '/api/v1/audit/events?page_size=100');
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as { events: AuditEventView[] }).events;
  }
  /** Creates a TXT record, then PATCHes it by the id Cloudflare returns. */
  const createThenPatch = (name: string) => `async () => {
    const created = await cloudflare.request({ method: 'POST', path: '/zones/${zoneId}/dns_records', body: { type: 'TXT', name: ${name}, content: 'first' } });
    const patched = await cloudflare.request({ method: 'PATCH', path: '/zones/${zoneId}/dns_records/' + created.result?.id, body: { content: 'second' } });
    return { id: created.result?.id ?? null, patched: patched.result?.content ?? null };
  }`;

  it('applies create-then-patch one step at a time: the PATCH is planned again with the real id', async () => {
    await connect('ann');
    cf.clearRequests();
    const out = await execute('ann', createThenPatch(`'step.steps.example'`));
    expect(out.error).toBeUndefined();
    expect(writesSeen()).toEqual([]);
    const planned = out.approval as Approval;
    expect(planned).toMatchObject({ status: 'pending', dependent: true, apply_in_steps: true });
    expect(planned.plan.map((w) => [w.seq, w.method, w.path])).toEqual([
      [1, 'POST', `/zones/${zoneId}/dns_records`],
      [2, 'PATCH', `/zones/${zoneId}/dns_records/undefined`],
    ]);
    // Step 1 sends the create alone; its digest is of exactly that.
    expect(planned.steps).toHaveLength(1);
    const first = planned.steps?.[0] as Step;
    expect(first).toMatchObject({ step: 1, status: 'pending', execution_id: planned.execution_id });
    expect(first.sends.map((w) => [w.seq, w.method])).toEqual([[1, 'POST']]);
    expect(first.plan_sha256).toBe(planned.plan_sha256);

    // Approving step 1 applies the create only, then the code runs again with its real result.
    const afterFirst = await approve(planned.id, 'create it');
    expect(writesSeen().map((r) => [r.method, r.path])).toEqual([['POST', `/zones/${zoneId}/dns_records`]]);
    const records = [...(cf.state.dnsRecords.get(zoneId)?.values() ?? [])];
    expect(records.map((r) => [r.name, r.content])).toEqual([['step.steps.example', 'first']]);
    const recordId = records[0]?.id ?? '';
    expect(afterFirst.status).toBe('pending');
    expect(afterFirst.plan.map((w) => [w.seq, w.method, w.path, w.body])).toEqual([
      [2, 'PATCH', `/zones/${zoneId}/dns_records/${recordId}`, { content: 'second' }],
    ]);
    expect(afterFirst.dependent).toBe(false);
    expect(afterFirst.steps?.map((s) => [s.step, s.status])).toEqual([
      [1, 'applied'],
      [2, 'pending'],
    ]);
    const second = afterFirst.steps?.[1] as Step;
    expect(second.execution_id).toMatch(/^exe_/);
    expect(second.execution_id).not.toBe(planned.execution_id);
    expect(second.plan_sha256).toBe(afterFirst.plan_sha256);
    expect(second.plan_sha256).not.toBe(planned.plan_sha256);
    expect(afterFirst.steps?.[0]).toMatchObject({
      decided_by: { type: 'api_key', id: approver.id },
      results: [{ seq: 1, status: 200, success: true }],
    });
    // The approver sees the same over GET, and the agent over its MCP poll.
    expect((await read(planned.id)).steps?.map((s) => s.status)).toEqual(['applied', 'pending']);
    expect(await mcpPoll(planned.id)).toMatch(
      new RegExp(`It is applied in steps: step 2 sends PATCH /zones/${zoneId}/dns_records/${recordId}`),
    );

    // A decision made on step 1 that arrives now (late, or a retry whose answer was lost) does
    // not decide step 2, which nobody saw: 409 naming the step, nothing sent.
    for (const body of [{}, { step: 1 }]) {
      const late = await api('POST', `/api/v1/approvals/${planned.id}/approve`, body, approver.apiKey);
      expect(late.statusCode, late.body).toBe(409);
      expect(late.json().error).toMatchObject({ code: 'conflict', field: 'step' });
      expect(late.json().error.message).toMatch(/step 2/);
    }
    expect(writesSeen()).toHaveLength(1);
    expect((await read(planned.id)).steps?.map((s) => s.status)).toEqual(['applied', 'pending']);

    // Approving step 2 sends the PATCH with the real id; the re-run plans nothing more: applied.
    const done = await approve(planned.id);
    expect(writesSeen().map((r) => [r.method, r.path])).toEqual([
      ['POST', `/zones/${zoneId}/dns_records`],
      ['PATCH', `/zones/${zoneId}/dns_records/${recordId}`],
    ]);
    expect(cf.state.dnsRecords.get(zoneId)?.get(recordId)?.content).toBe('second');
    expect(done.status).toBe('applied');
    expect(done.steps?.map((s) => [s.step, s.status])).toEqual([
      [1, 'applied'],
      [2, 'applied'],
    ]);
    expect(done.results?.map((r) => [r.seq, r.success])).toEqual([
      [1, true],
      [2, true],
    ]);
    expect(await mcpPoll(planned.id)).toMatch(/was approved and applied in 2 step\(s\)/);

    // The trail (oldest first) links each step: its request, its decision, the writes sent under the approval's
    // id, and the re-run of the code that planned the next one.
    const events = (await trail()).filter(
      (e) => e.details?.approval_id === planned.id || e.execution_id === planned.id,
    );
    const lifecycle = events
      .filter((e) => e.action.startsWith('approval.'))
      .map((e) => [e.action, e.details?.step ?? null]);
    expect(lifecycle).toEqual([
      ['approval.requested', 1],
      ['approval.approved', 1],
      ['approval.step_applied', 1],
      ['approval.requested', 2],
      ['approval.approved', 2],
      ['approval.applied', 2],
    ]);
    const requested2 = events.find((e) => e.action === 'approval.requested' && e.details?.step === 2);
    expect(requested2?.details).toMatchObject({
      plan_sha256: afterFirst.plan_sha256,
      planned_by: second.execution_id,
      sends_sha256: second.sends_sha256,
    });
    const approved1 = events.find((e) => e.action === 'approval.approved' && e.details?.step === 1);
    expect(approved1?.details?.sends_sha256).toBe(first.sends_sha256);
    const sent = events.filter((e) => e.execution_id === planned.id && e.upstream && e.outcome === 'success');
    expect(sent.map((e) => e.upstream?.method)).toEqual(['POST', 'PATCH']);
    // The re-runs are executions of their own on the trail, and sent no write.
    const all = await trail();
    const reruns = all.filter((e) => e.kind === 'tool_call' && e.caller.id === approver.id);
    expect(reruns.length).toBeGreaterThanOrEqual(2);
    const rerunIds = new Set(reruns.map((e) => e.execution_id));
    expect(rerunIds.has(second.execution_id)).toBe(true);
    expect(
      all.filter((e) => rerunIds.has(e.execution_id) && e.upstream && e.upstream.method !== 'GET'),
    ).toEqual([]);
  });

  it('sends nothing of a later step a person rejects, and keeps no code once the approval is settled', async () => {
    await connect('eve');
    cf.clearRequests();
    const planned = (await execute('eve', createThenPatch(`'rejected.steps.example'`))).approval as Approval;
    const kept = () =>
      t.db.db.kysely
        .selectFrom('approvals')
        .select('replay_code')
        .where('id', '=', planned.id)
        .executeTakeFirstOrThrow();
    expect((await kept()).replay_code).toContain('rejected.steps.example');
    expect((await approve(planned.id)).status).toBe('pending');
    const res = await api(
      'POST',
      `/api/v1/approvals/${planned.id}/reject`,
      { comment: 'not the PATCH', step: 2 },
      approver.apiKey,
    );
    expect(res.statusCode, res.body).toBe(200);
    const rejected = (res.json() as { approval: Approval }).approval;
    expect(rejected.status).toBe('rejected');
    expect(rejected.steps?.map((s) => [s.step, s.status])).toEqual([
      [1, 'applied'],
      [2, 'rejected'],
    ]);
    expect(rejected.steps?.[1]).toMatchObject({ decided_by: { type: 'api_key', id: approver.id } });
    expect(writesSeen().map((r) => r.method)).toEqual(['POST']);
    expect((await kept()).replay_code).toBeNull();
  });

  it('stops when the code plans another write on the re-run (it depends on the time), sending nothing more', async () => {
    await connect('ben');
    cf.clearRequests();
    const out = await execute('ben', createThenPatch(`'t' + Date.now() + '.steps.example'`));
    const planned = out.approval as Approval;
    expect(planned).toMatchObject({ status: 'pending', apply_in_steps: true });
    // Later than the planning run's clock, whatever the resolution.
    await new Promise((resolve) => setTimeout(resolve, 5));
    const failed = await approve(planned.id);
    expect(failed.status).toBe('failed');
    expect(failed.steps?.map((s) => [s.step, s.status])).toEqual([
      [1, 'applied'],
      [2, 'failed'],
    ]);
    expect(failed.steps?.[1]?.error?.message).toMatch(
      /made POST \/zones\/\w+\/dns_records as write 1, but write 1 applied was POST \/zones\/\w+\/dns_records with another query or body: the code does not plan the same writes when run again/,
    );
    // Only the approved create went out.
    expect(writesSeen().map((r) => r.method)).toEqual(['POST']);
    expect(
      (await api('POST', `/api/v1/approvals/${planned.id}/approve`, {}, approver.apiKey)).statusCode,
    ).toBe(409);
    expect(writesSeen().map((r) => r.method)).toEqual(['POST']);
    const events = await trail();
    expect(
      events.find((e) => e.action === 'approval.failed' && e.details?.approval_id === planned.id)?.details,
    ).toMatchObject({ step: 1, reason: { code: 'conflict' } });
  });

  it('stops when the re-run makes a write no approve rule holds (it went out when the agent ran): never sent twice', async () => {
    await connect('dan');
    const allowCreate = { rules: [{ effect: 'allow', methods: ['POST'], path: '/zones/*/dns_records' }] };
    expect((await api('PUT', '/api/v1/identities/dan/policy', allowCreate)).statusCode).toBe(200);
    cf.clearRequests();
    const out = await execute(
      'dan',
      `async () => {
        const created = await cloudflare.request({ method: 'POST', path: '/zones/${zoneId}/dns_records', body: { type: 'TXT', name: 'live.steps.example', content: 'a' } });
        const patched = await cloudflare.request({ method: 'PATCH', path: '/zones/${zoneId}/dns_records/' + created.result.id, body: { content: 'b' } });
        await cloudflare.request({ method: 'DELETE', path: '/zones/${zoneId}/dns_records/' + patched.result?.id });
        return 'planned';
      }`,
    );
    // The create was allowed and went out at once; the PATCH and the DELETE wait.
    expect(writesSeen().map((r) => r.method)).toEqual(['POST']);
    const planned = out.approval as Approval;
    expect(planned).toMatchObject({ dependent: true, apply_in_steps: true });
    expect(planned.plan.map((w) => w.method)).toEqual(['PATCH', 'DELETE']);
    const failed = await approve(planned.id);
    expect(failed.status).toBe('failed');
    expect(failed.steps?.[1]?.error?.message).toMatch(
      /the re-run of the agent's code made a write no approve rule holds .*a re-run never sends a write itself/,
    );
    // Step 1's PATCH went out; the create was not sent a second time.
    expect(writesSeen().map((r) => r.method)).toEqual(['POST', 'PATCH']);
    expect((await api('DELETE', '/api/v1/identities/dan/policy')).statusCode).toBe(204);
  });

  it('refuses apply in steps for a tenant that does not capture code, saying why and how to enable it', async () => {
    await connect('cat');
    expect((await api('PATCH', '/api/v1/settings', { audit: { capture_code: false } })).statusCode).toBe(200);
    try {
      cf.clearRequests();
      const out = await execute('cat', createThenPatch(`'nocode.steps.example'`));
      expect(out.approval).toMatchObject({
        status: 'pending',
        dependent: true,
        apply_in_steps: false,
        steps: null,
      });
      const refused = await api('POST', `/api/v1/approvals/${out.approval?.id}/approve`, {}, approver.apiKey);
      expect(refused.statusCode).toBe(409);
      expect(refused.json().error.message).toMatch(
        /cannot be applied as recorded; it could be applied in steps.*capture_code is off.*PATCH \/api\/v1\/settings \{"audit": \{"capture_code": true\}\}/,
      );
      expect(writesSeen()).toEqual([]);
    } finally {
      expect((await api('PATCH', '/api/v1/settings', { audit: { capture_code: null } })).statusCode).toBe(
        200,
      );
    }
  });

  it('does not run the code again once the tenant turned code capture off after planning, and drops it', async () => {
    await connect('fay');
    cf.clearRequests();
    const planned = (await execute('fay', createThenPatch(`'off.steps.example'`))).approval as Approval;
    expect((await api('PATCH', '/api/v1/settings', { audit: { capture_code: false } })).statusCode).toBe(200);
    try {
      const after = await approve(planned.id);
      // Step 1 was approved and sent; the code was not run again, nothing more planned.
      expect(writesSeen().map((r) => r.method)).toEqual(['POST']);
      expect(after.status).toBe('failed');
      expect(after.steps?.at(-1)?.error?.message).toMatch(/capture_code was turned off/);
      const row = await t.db.db.kysely
        .selectFrom('approvals')
        .select('replay_code')
        .where('id', '=', planned.id)
        .executeTakeFirstOrThrow();
      expect(row.replay_code).toBeNull();
    } finally {
      expect((await api('PATCH', '/api/v1/settings', { audit: { capture_code: null } })).statusCode).toBe(
        200,
      );
    }
  });

  it('expires a dependent plan nobody reads once it is due, with its event, and drops the stored code', async () => {
    await connect('gus');
    const planned = (await execute('gus', createThenPatch(`'late.steps.example'`))).approval as Approval;
    await t.db.db.kysely
      .updateTable('approvals')
      .set({ expires_at: new Date(Date.now() - 1000) })
      .where('id', '=', planned.id)
      .execute();
    expect(await t.container.approvals.expireDue()).toBeGreaterThanOrEqual(1);
    const row = await t.db.db.kysely
      .selectFrom('approvals')
      .select(['status', 'replay_code'])
      .where('id', '=', planned.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'expired', replay_code: null });
    const expired = await t.db.db.kysely
      .selectFrom('audit_events')
      .select('action')
      .where('action', '=', 'approval.expired')
      .where('execution_id', '=', planned.execution_id)
      .execute();
    expect(expired).toHaveLength(1);
    // Nothing more is due: a second sweep settles nothing of it.
    expect(await t.container.approvals.expireDue()).toBe(0);
  });

  async function mcpPoll(id: string): Promise<string> {
    const client = await connectMcpClient({
      base,
      apiKey: tenant.apiKey,
      identifier: 'ann',
      name: 'steps-test',
      secrets: t.secrets,
    });
    try {
      const result = await client.callTool({
        name: 'cloudflare_execute',
        arguments: { code: '', approval_id: id },
      });
      return (result.content as Array<{ type: string; text: string }>)[0]?.text ?? '';
    } finally {
      await client.close();
    }
  }
});
