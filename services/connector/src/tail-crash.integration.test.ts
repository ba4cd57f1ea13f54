import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collectTail } from '@warden/cloudflare';
import { createTestDatabase, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { freePort } from './test-support/free-port.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { createTailingUser } from './test-support/tailing-user.ts';

const MAIN = path.join(REPO_ROOT, 'services/connector/src/main.ts');

/**
 * Found by the outsider attack on issue 16 (high): agent code that starts a tail and returns
 * (`tail.worker({script: 'api', seconds: 5}).catch(() => {}); return 'done'`) ends its execution
 * while the tail is being created; `collectTail` then got an aborted signal and terminated a
 * still-connecting WebSocket before any 'error' listener was attached, ws threw "WebSocket was
 * closed before the connection was established" out of the process, and the whole connector
 * exited with every tenant's calls, leaving the tail undeleted. Run against a real process.
 */
describe('a tail whose execution already ended', () => {
  it('collectTail with an aborted signal connects to nothing and leaves no unhandled error behind', async () => {
    const uncaught: unknown[] = [];
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const controller = new AbortController();
      controller.abort();
      const result = await collectTail({
        url: 'ws://127.0.0.1:9/tail/x',
        filters: { filters: [] },
        durationMs: 1000,
        maxEvents: 1,
        maxEventBytes: 4096,
        scrub: (b) => b,
        signal: controller.signal,
      });
      expect(result.ended).toBe('aborted');
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const listener of listeners) process.on('uncaughtException', listener);
    }
    expect(uncaught.map((e) => String(e))).toEqual([]);
  });

  describe('end to end against a real Warden process', () => {
    let cf: FakeCloudflare;
    let db: TestDatabase;
    let warden: ChildProcess;
    let exited: Promise<number | null>;
    let stderr = '';
    let base: string;
    const adminToken = randomBytes(32).toString('hex');

    beforeAll(async () => {
      cf = await startFakeCloudflare({ specPath: SPEC_PATH, tailIntervalMs: 20 });
      db = await createTestDatabase({ migrate: true });
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      warden = spawn(process.execPath, ['--no-node-snapshot', MAIN], {
        cwd: REPO_ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          DATABASE_URL: db.url,
          REDIS_URL: process.env.REDIS_URL ?? '',
          DATA_DIR: mkdtempSync(path.join(tmpdir(), 'warden-tail-crash-')),
          WARDEN_ADMIN_TOKEN: adminToken,
          CLOUDFLARE_API_BASE: cf.url,
          CLOUDFLARE_SPEC_PATH: SPEC_PATH,
          SANDBOX_POOL_SIZE: '1',
          PORT: String(port),
          PUBLIC_URL: base,
          LOG_LEVEL: 'warn',
        },
      });
      warden.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      warden.stdout?.resume();
      exited = new Promise((resolve) => warden.once('exit', (code) => resolve(code)));
      const deadline = Date.now() + 60_000;
      for (;;) {
        const ready = await fetch(`${base}/readyz`).then(
          (r) => r.status === 200,
          () => false,
        );
        if (ready) break;
        if (Date.now() > deadline || warden.exitCode !== null)
          throw new Error(`warden did not start: ${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }, 90_000);
    afterAll(async () => {
      if (warden && warden.exitCode === null) {
        warden.kill('SIGTERM');
        await exited;
      }
      await db?.drop();
      await cf?.close();
    });

    async function json(method: string, url: string, token: string, body?: unknown) {
      const res = await fetch(`${base}${url}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    }

    it('a tenant that starts a tail and returns does not bring the service down, and the tail is deleted', async () => {
      const tenant = await json('POST', '/admin/v1/tenants', adminToken, { name: 'Mallory' });
      expect(tenant.status).toBe(201);
      const apiKey = tenant.body.api_key as string;
      const { token } = createTailingUser(cf, {
        email: 'mallory@example.com',
        accountName: 'Mallory',
      });
      const connected = await json('POST', '/api/v1/connected_accounts', apiKey, {
        identifier: 'mallory',
        authorization: { type: 'api_token', api_token: token },
      });
      expect(connected.status).toBe(201);

      const run = await json('POST', '/api/v1/execute_tool', apiKey, {
        tool_name: 'cloudflare_execute',
        identifier: 'mallory',
        params: {
          code: `async () => { tail.worker({ script: 'api', seconds: 5 }).catch(() => {}); return 'done'; }`,
        },
      }).catch((error: unknown) => ({ status: null, body: { fetch: String(error) } }));
      // Whatever the parent still does for the call (create, connect, delete) is over by now.
      const code = await Promise.race([
        exited,
        new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), 3000)),
      ]);
      // Before the fix the process exited with code 1 here and the tail stayed live at the fake.
      const sessions = cf.tails.sessions().map((s) => ({ id: s.id, deletedAt: s.deletedAt }));
      expect({ code, run, sessions, stderr: stderr.slice(-600) }).toMatchObject({ code: 'alive' });
      expect(sessions.every((s) => s.deletedAt !== null)).toBe(true);
      expect(run.body).toMatchObject({ data: 'done' });
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    }, 30_000);
  });
});
