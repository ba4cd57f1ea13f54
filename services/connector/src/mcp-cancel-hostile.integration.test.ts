import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { SPEC_PATH } from './test-support/paths.ts';
import { startListeningReplicas } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';
import { connectTailingVictim } from './test-support/tailing-user.ts';
import type { AuditEventView } from './test-support/audit-event-view.ts';

/**
 * Outsider attack on the MCP cancellation of issue 16: a `notifications/cancelled` stops a tool
 * call on the SSE transport. Can another client (another tenant, another identity of the same
 * tenant, on this replica or another one) cancel the victim's running execution with it, by
 * posting to the victim's session (its id leaked, e.g. from a log or a proxy) or by guessing
 * request ids on its own session or on the stateless transport? Two replicas share the
 * database and Redis (the SSE forward over the bus).
 */
describe('outsider attack (issue 16): cancelling another client’s MCP tool call', () => {
  let cf: FakeCloudflare;
  let a: TestApp;
  let b: TestApp;
  let base: string;
  let baseB: string;
  let victimKey: string;
  let cfToken: string;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
    ({ a, b, baseA: base, baseB } = await startListeningReplicas({ CLOUDFLARE_API_BASE: cf.url }));
    ({ apiKey: victimKey, token: cfToken } = await connectTailingVictim(cf, a, {
      name: 'Victim',
      email: 'victim@example.com',
      accountName: 'Victim Co',
      identifiers: ['alice', 'eve'],
    }));
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
    await cf?.close();
  });

  async function mint(apiKey: string, identifier: string): Promise<string> {
    const res = await fetch(`${base}/api/v1/mcp/tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ identifier, expiry: '3600s' }),
    });
    expect(res.status).toBe(201);
    const { token } = (await res.json()) as { token: string };
    a.secrets.add(token);
    b.secrets.add(token);
    return token;
  }

  async function sseClient(token: string): Promise<{ client: Client; sessionId: string }> {
    const headers = { Authorization: `Bearer ${token}` };
    const transport = new SSEClientTransport(new URL(`${base}/sse`), {
      requestInit: { headers },
      eventSourceInit: {
        fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
      },
    });
    const client = new Client({ name: 'attack16', version: '1.0.0' });
    await client.connect(transport);
    const endpoint = (transport as unknown as { _endpoint: URL })._endpoint;
    const sessionId = endpoint.searchParams.get('sessionId');
    if (!sessionId) throw new Error('no SSE session id');
    return { client, sessionId };
  }

  const cancel = (requestId: number) => ({
    jsonrpc: '2.0',
    method: 'notifications/cancelled',
    params: { requestId, reason: 'attack16' },
  });

  /** Posts cancellations for request ids 0..9 to an SSE session; the statuses answered. */
  async function cancelAll(on: string, sessionId: string, token: string): Promise<number[]> {
    const statuses: number[] = [];
    for (let id = 0; id < 10; id++) {
      const res = await fetch(`${on}/messages?sessionId=${encodeURIComponent(sessionId)}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(cancel(id)),
      });
      statuses.push(res.status);
      await res.text();
    }
    return statuses;
  }

  async function toolCalls(): Promise<AuditEventView[]> {
    const res = await fetch(`${base}/api/v1/audit/events?kind=tool_call&page_size=100`, {
      headers: { authorization: `Bearer ${victimKey}` },
    });
    const { events } = (await res.json()) as { events: AuditEventView[] };
    return events.sort((x, y) => x.seq - y.seq);
  }

  const newSessions = (before: number) => cf.tails.sessions().slice(before);

  /** A call whose code keeps a tail open for `seconds` (its answer is never awaited here). */
  function startTail(client: Client, seconds: number) {
    return client.callTool({
      name: 'cloudflare_execute',
      arguments: { code: `async () => (await tail.worker({ script: 'api', seconds: ${seconds} })).ended` },
    });
  }

  /** The tail of the call started after `before` sessions is connected: the call is running. */
  async function tailRunning(before: number): Promise<void> {
    await expect
      .poll(() => newSessions(before)[0]?.connections ?? 0, { timeout: 5_000, interval: 20 })
      .toBe(1);
  }

  /** The call started at `started` was stopped at once: its tail deleted, its record `aborted`. */
  async function stoppedAtOnce(before: number, started: number): Promise<void> {
    await expect
      .poll(() => newSessions(before)[0]?.deletedAt ?? null, { timeout: 5_000, interval: 50 })
      .not.toBeNull();
    expect(newSessions(before)[0]!.deletedAt!.getTime() - started).toBeLessThan(5_000);
    await expect
      .poll(async () => (await toolCalls()).at(-1)?.error?.code ?? null, { timeout: 5_000, interval: 50 })
      .toBe('aborted');
  }

  /** One more tool call is on the record, a success. */
  async function recordedSuccess(callsBefore: number): Promise<void> {
    await expect
      .poll(async () => (await toolCalls()).length, { timeout: 5_000, interval: 50 })
      .toBe(callsBefore + 1);
    expect((await toolCalls()).at(-1)).toMatchObject({ outcome: 'success' });
  }

  /** Posts cancellations of request ids 0..9 to the stateless endpoint of `on`; the statuses answered. */
  /** Cancels request ids 0-9 on the stateless transport, as a client of `session` (Mcp-Session-Id) when given. */
  async function cancelStateless(on: string, token: string, session?: string): Promise<number[]> {
    const statuses: number[] = [];
    for (let id = 0; id < 10; id++) {
      const res = await fetch(`${on}/mcp`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(session ? { 'mcp-session-id': session } : {}),
        },
        body: JSON.stringify(cancel(id)),
      });
      statuses.push(res.status);
      await res.text();
    }
    return statuses;
  }

  it("HELD: no other tenant or identity can cancel a running SSE tool call, on its session (id leaked), on its own session, on the stateless transport or through another replica; the victim's own cancellation does", async () => {
    const victimToken = await mint(victimKey, 'alice');
    const { apiKey: otherKey } = await a.createTenant('Attacker');
    await a.connect(otherKey, 'mallory', cfToken);
    const attackerToken = await mint(otherKey, 'mallory');
    const colleagueToken = await mint(victimKey, 'eve');
    const victim = await sseClient(victimToken);
    const attacker = await sseClient(attackerToken);
    try {
      const callsBefore = (await toolCalls()).length;
      const before = cf.tails.sessions().length;
      const started = Date.now();
      const pending = startTail(victim.client, 3);
      await tailRunning(before);

      // The victim's session id, leaked: another tenant's token and a colleague's are refused.
      expect(await cancelAll(base, victim.sessionId, attackerToken)).toEqual(Array(10).fill(404));
      expect(await cancelAll(base, victim.sessionId, colleagueToken)).toEqual(Array(10).fill(404));
      // Through the other replica the message is forwarded over the bus, and the replica holding
      // the stream does not take it for another token: refused the same (404, after the wait for it).
      expect(await cancelAll(baseB, victim.sessionId, attackerToken)).toEqual(Array(10).fill(404));
      // Guessed request ids on the attacker's own session, and on the stateless transport.
      expect(await cancelAll(base, attacker.sessionId, attackerToken)).toEqual(Array(10).fill(202));
      expect(await cancelStateless(base, attackerToken)).toEqual(Array(10).fill(202));

      // A cancelled SSE call is never answered: give up well before the test's own timeout.
      const result = (await Promise.race([
        pending,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error('the victim call never answered: it was cancelled')), 10_000),
        ),
      ])) as { isError?: boolean; content: Array<{ text: string }> };
      expect(result.isError ?? false).toBe(false);
      expect(result.content[0]?.text).not.toContain('aborted');
      const [session] = newSessions(before);
      expect(session!.deletedAt!.getTime() - started).toBeGreaterThanOrEqual(3_000);
      await recordedSuccess(callsBefore);

      // Control: the same notifications from the victim's own token stop its call at once, also
      // through the other replica (taken by the replica holding the stream, so accepted: 202).
      const again = cf.tails.sessions().length;
      const startedAgain = Date.now();
      const stopped = startTail(victim.client, 10);
      stopped.catch(() => {});
      await tailRunning(again);
      expect(await cancelAll(baseB, victim.sessionId, victimToken)).toEqual(Array(10).fill(202));
      await stoppedAtOnce(again, startedAgain);
    } finally {
      await victim.client.close();
      await attacker.client.close();
    }
  });

  it('HELD: on the stateless transport only the call’s own client (token and session) cancels it, on whichever replica; another tenant’s or a colleague’s guesses do nothing, also with its session id', async () => {
    const victimToken = await mint(victimKey, 'alice');
    const { apiKey: otherKey } = await a.createTenant('Stateless attacker');
    await a.connect(otherKey, 'mallory', cfToken);
    const attackerToken = await mint(otherKey, 'mallory');
    const colleagueToken = await mint(victimKey, 'eve');
    const victim = new Client({ name: 'stateless-victim', version: '1.0.0' });
    const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${victimToken}` } },
    });
    await victim.connect(transport);
    // Warden hands each client a session id at initialize, which scopes its cancellations.
    const session = transport.sessionId;
    expect(session).toMatch(/^mcs_[A-Za-z0-9_-]{22}$/);
    try {
      const callsBefore = (await toolCalls()).length;
      const before = cf.tails.sessions().length;
      const started = Date.now();
      const pending = startTail(victim, 3);
      await tailRunning(before);
      // Every request id the victim's call could have, from another tenant's token and from a
      // colleague's (same tenant, another identity), on both replicas: answered, and dropped.
      // With the victim's session id too (leaked): it scopes a token's calls, it grants nothing.
      for (const token of [attackerToken, colleagueToken]) {
        expect(await cancelStateless(base, token)).toEqual(Array(10).fill(202));
        expect(await cancelStateless(baseB, token)).toEqual(Array(10).fill(202));
        expect(await cancelStateless(baseB, token, session)).toEqual(Array(10).fill(202));
      }
      // The victim's own token without its session (another client of that token) reaches nothing either.
      expect(await cancelStateless(base, victimToken)).toEqual(Array(10).fill(202));
      const result = (await pending) as { isError?: boolean; content: Array<{ text: string }> };
      expect(result.isError ?? false).toBe(false);
      expect(newSessions(before)[0]!.deletedAt!.getTime() - started).toBeGreaterThanOrEqual(3_000);
      await recordedSuccess(callsBefore);

      // Control: the victim's own client (token and session) cancels it, through the other replica (over the bus).
      const again = cf.tails.sessions().length;
      const startedAgain = Date.now();
      const stopped = startTail(victim, 10);
      stopped.catch(() => {});
      await tailRunning(again);
      expect(await cancelStateless(baseB, victimToken, session)).toEqual(Array(10).fill(202));
      await stoppedAtOnce(again, startedAgain);
    } finally {
      await victim.close();
    }
  });
});
