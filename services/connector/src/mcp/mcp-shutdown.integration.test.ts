import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { connectMcpClient } from '../test-support/mcp-client.ts';
import { SPEC_PATH } from '../test-support/paths.ts';
import { startListeningTestApp } from '../test-support/test-app.ts';
import type { TestApp } from '../test-support/test-app.ts';

/**
 * A replica that stops (SIGTERM: `app.close()`) while MCP clients hold SSE streams: the server's
 * close waits for every connection, and an SSE stream never ends on its own, so the streams must
 * end as closing starts, each once its tool calls in flight have answered.
 */
describe('closing a replica with MCP SSE streams open', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let base: string;
  let apiKey: string;
  let zoneId: string;
  /** The app's close, once the test started it (it may still be waiting on a stream). */
  let closing: Promise<void> | null = null;

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    ({ t, base } = await startListeningTestApp({ CLOUDFLARE_API_BASE: cf.url }));
    const tenant = await t.createTenant('SSE shutdown tenant');
    const user = cf.state.createUser({ email: 'sse@example.com' });
    const account = cf.state.createAccount({ name: 'SSE Co', members: [user.id] });
    zoneId = cf.state.createZone({ accountId: account.id, name: 'sse.example' }).id;
    const cfToken = cf.state.createUserToken({
      userId: user.id,
      permissions: ['com.cloudflare.api.user.read', '#zone:read'],
    });
    await t.connect(tenant.apiKey, 'sse@corp', cfToken.value);
    apiKey = tenant.apiKey;
  });
  afterAll(async () => {
    await (closing ?? t.close());
    await cf.close();
  });

  async function connectSse(name: string): Promise<{ client: Client; ended: Promise<void> }> {
    const client = await connectMcpClient({
      base,
      apiKey,
      identifier: 'sse@corp',
      name,
      secrets: t.secrets,
      transport: 'sse',
    });
    // The SDK's SSE client reconnects when its stream ends, and says so as an error first.
    const ended = new Promise<void>((resolve) => {
      client.onclose = resolve;
      client.onerror = () => resolve();
    });
    return { client, ended };
  }

  it('ends idle streams at once and a busy one after its call answers, so the close completes', async () => {
    const idle = await connectSse('idle-client');
    const busy = await connectSse('busy-client');
    let idleEndedAt = 0;
    void idle.ended.then(() => (idleEndedAt = Date.now()));
    cf.faults.setLatencyMs(1_500);
    const call = busy.client.callTool({
      name: 'cloudflare_execute',
      arguments: {
        code: `async () => (await cloudflare.request({ method: 'GET', path: '/zones/${zoneId}' })).result.id`,
      },
    });
    // The upstream request is in flight (held by the fake) when the replica starts closing.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const closingAt = Date.now();
    closing = t.close();
    try {
      const stopped = await Promise.race([
        closing.then(() => 'closed' as const),
        new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 10_000)),
      ]);
      expect(stopped, 'app.close() waited on SSE streams that never end').toBe('closed');
      // The call in flight was answered over its stream before that stream ended.
      const result = (await call) as { isError?: boolean; content: Array<{ type: string; text: string }> };
      expect(result.isError ?? false).toBe(false);
      expect(result.content[0]?.text).toContain(zoneId);
      await busy.ended;
      // The idle client's stream ended as closing started, not after the busy call.
      expect(idleEndedAt).toBeGreaterThan(0);
      expect(idleEndedAt - closingAt).toBeLessThan(800);
    } finally {
      // Whatever happened, the clients go (a close still waiting on their streams then ends).
      await Promise.all([idle.client.close(), busy.client.close()]);
    }
    cf.faults.setLatencyMs(0);
  }, 30_000);
});
