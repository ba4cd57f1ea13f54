import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startFakeCloudflare } from './fake-cloudflare.server.ts';
import type { FakeCloudflare } from './fake-cloudflare.server.ts';
import { seedDemo } from './fake-cloudflare.seed.ts';
import type { FakeDemo } from './fake-cloudflare.seed.ts';
import { TAIL_PROTOCOL } from './fake-tail-socket.ts';
import { api } from './fake-cloudflare.test-helpers.ts';

/** Opens a socket; resolves to the upgrade's status (101 when it opened) and the open socket. */
function open(url: string, protocol?: string): Promise<{ status: number; socket: WebSocket }> {
  return new Promise((resolve, reject) => {
    const socket = protocol ? new WebSocket(url, protocol) : new WebSocket(url);
    socket.on('unexpected-response', (_req, response) =>
      resolve({ status: response.statusCode ?? 0, socket }),
    );
    socket.on('open', () => resolve({ status: 101, socket }));
    socket.on('error', reject);
  });
}

describe('fake Cloudflare: Worker tails', () => {
  let fake: FakeCloudflare;
  let demo: FakeDemo;
  beforeAll(async () => {
    fake = await startFakeCloudflare({ budget: null, tailIntervalMs: 5 });
    demo = seedDemo(fake.state);
    fake.tails.script(demo.account.id, demo.workerName, [
      { outcome: 'ok', event: { request: { method: 'GET' } }, logs: [] },
      { outcome: 'exception', event: { request: { method: 'POST' } }, logs: [] },
    ]);
  });
  afterAll(async () => {
    await fake.close();
  });

  const create = async () => {
    const res = await api(
      fake.url,
      { token: demo.userToken.value },
      'POST',
      `/accounts/${demo.account.id}/workers/scripts/${demo.workerName}/tails`,
      { body: { filters: [] } },
    );
    expect(res.status).toBe(200);
    return res.json.result as { id: string; url: string; expires_at: string };
  };

  it('hands out a ws:// URL on its own origin, refuses a socket without trace-v1, streams filtered events, closes on delete', async () => {
    const tail = await create();
    expect(tail.url).toBe(`${fake.origin.replace('http://', 'ws://')}/tail/${tail.id}`);
    const refusedBefore = fake.tails.refused();
    const bare = await open(tail.url);
    expect(bare.status).toBe(400);
    expect(fake.tails.refused()).toBe(refusedBefore + 1);

    const { status, socket } = await open(tail.url, TAIL_PROTOCOL);
    expect(status).toBe(101);
    expect(socket.protocol).toBe(TAIL_PROTOCOL);
    const received: unknown[] = [];
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    socket.on('message', (data) => received.push(JSON.parse(String(data))));
    socket.send(JSON.stringify({ filters: [{ outcome: ['exception'] }] }));
    await expect.poll(() => received.length).toBe(1);
    expect(received[0]).toMatchObject({ outcome: 'exception' });

    const deleted = await api(
      fake.url,
      { token: demo.userToken.value },
      'DELETE',
      `/accounts/${demo.account.id}/workers/scripts/${demo.workerName}/tails/${tail.id}`,
    );
    expect(deleted.status).toBe(200);
    expect(await closed).toBe(1000);
    const session = fake.tails.sessions().find((s) => s.id === tail.id);
    expect(session).toMatchObject({
      connections: 1,
      eventsSent: 1,
      filters: { filters: [{ outcome: ['exception'] }] },
    });
    expect(session!.deletedAt).not.toBeNull();
    // A deleted tail takes no connection and cannot be deleted again.
    expect((await open(tail.url, TAIL_PROTOCOL)).status).toBe(404);
    const again = await api(
      fake.url,
      { token: demo.userToken.value },
      'DELETE',
      `/accounts/${demo.account.id}/workers/scripts/${demo.workerName}/tails/${tail.id}`,
    );
    expect(again.status).toBe(404);
  });

  it('moves the socket base with tailSocketBase, and refuses a tail of a Worker that does not exist', async () => {
    const other = await startFakeCloudflare({ budget: null, tailSocketBase: 'wss://tail.example.test' });
    try {
      const d = seedDemo(other.state);
      const res = await api(
        other.url,
        { token: d.userToken.value },
        'POST',
        `/accounts/${d.account.id}/workers/scripts/${d.workerName}/tails`,
        { body: {} },
      );
      expect((res.json.result as { url: string }).url).toMatch(/^wss:\/\/tail\.example\.test\/tail\/\w+$/);
      const missing = await api(
        other.url,
        { token: d.userToken.value },
        'POST',
        `/accounts/${d.account.id}/workers/scripts/nope/tails`,
        { body: {} },
      );
      expect(missing.status).toBe(404);
    } finally {
      await other.close();
    }
  });
});
