import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConnectorProcess } from './test-support/connector-process.ts';
import type { ConnectorProcess } from './test-support/connector-process.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';

// The embedded database (PGlite) belongs to one process. A second server on the same
// DATA_DIR, or a CLI command, would otherwise write where the running server never looks.

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe('embedded mode is single-writer', () => {
  const adminToken = randomBytes(32).toString('hex');
  let dataDir: string;
  let env: Record<string, string>;
  let server: ConnectorProcess | null = null;
  let publicUrl = 'http://127.0.0.1:8080';

  /**
   * `npx warden …` as an operator types it, with the server's environment (its PUBLIC_URL),
   * except the spec: no CLI command here needs Code Mode.
   */
  function warden(...args: string[]): Promise<Run> {
    const cliEnv = {
      PATH: process.env.PATH ?? '',
      ...env,
      PUBLIC_URL: publicUrl,
    };
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        ['services/connector/bin/warden.js', ...args],
        { cwd: REPO_ROOT, env: cliEnv, timeout: 60_000 },
        (error, stdout, stderr) =>
          resolve({
            code: error ? Number(error.code ?? 1) : 0,
            stdout: String(stdout),
            stderr: String(stderr),
          }),
      );
    });
  }

  async function tenantNames(url: string): Promise<string[]> {
    const res = await fetch(`${url}/admin/v1/tenants`, {
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { tenants: Array<{ name: string }> }).tenants.map((t) => t.name);
  }

  beforeAll(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'warden-embedded-'));
    env = {
      DATA_DIR: dataDir,
      WARDEN_ADMIN_TOKEN: adminToken,
      // A local spec, so /readyz can answer 200; nothing may reach the network.
      CLOUDFLARE_SPEC_PATH: SPEC_PATH,
      CLOUDFLARE_API_BASE: 'http://127.0.0.1:9/client/v4',
      SANDBOX_POOL_SIZE: '1',
      LOG_LEVEL: 'warn',
    };
  });
  afterAll(async () => {
    await server?.stop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('a second server on the same DATA_DIR refuses to start, naming the first', async () => {
    server = await startConnectorProcess('first', env);
    publicUrl = server.url;
    const lock = JSON.parse(readFileSync(path.join(dataDir, 'pglite.lock'), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(server.pid);
    await expect(startConnectorProcess('second', env)).rejects.toThrow(
      new RegExp(
        `failed to start: the embedded database in .* is in use by another Warden process \\(pid ${server.pid}: `,
      ),
    );
    server.assertRunning();
  });

  it('CLI commands refuse while the server runs, say what to do instead, and change nothing', async () => {
    const running = server as ConnectorProcess;
    const create = await warden('tenants', 'create', 'Beta');
    expect(create.code).toBe(1);
    expect(create.stdout).toBe('');
    expect(create.stderr).toContain('`warden tenants create` was not run: the running Warden server');
    expect(create.stderr).toContain(`(pid ${running.pid}, since `);
    expect(create.stderr).toContain(`curl -s -X POST ${running.url}/admin/v1/tenants`);
    expect(create.stderr).toContain(`-d '{"name":"Beta"}'`);

    const keys = await warden('keys', 'rotate');
    expect(keys.code).toBe(1);
    expect(keys.stderr).toContain('Stop the server and run the command again.');
    // `keys rotate` adds a local key version before it re-wraps: refused before that, too.
    expect(JSON.parse(readFileSync(path.join(dataDir, 'warden-keys.json'), 'utf8')).current).toBe(1);

    expect(await tenantNames(running.url)).toEqual([]);
  });

  it('after the server stops, the CLI writes and the next server sees it', async () => {
    await (server as ConnectorProcess).stop();
    server = null;
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false);
    const create = await warden('tenants', 'create', 'Beta');
    expect(create.stderr).not.toContain('was not run');
    expect(create.code).toBe(0);
    server = await startConnectorProcess('again', env);
    expect(await tenantNames(server.url)).toEqual(['Beta']);
    await server.stop();
    server = null;
  });

  it('a lock left by a process that died is taken over', async () => {
    const dead = spawnSync(process.execPath, ['-e', ''], { stdio: 'ignore' }).pid as number;
    writeFileSync(
      path.join(dataDir, 'pglite.lock'),
      JSON.stringify({
        pid: dead,
        hostname: hostname(),
        bootId: readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(),
        processStart: null,
        command: 'node services/connector/src/main.ts',
        startedAt: new Date().toISOString(),
        token: 'crashed',
      }),
    );
    const list = await warden('tenants', 'list');
    expect(list.stderr).toBe('');
    expect(list.code).toBe(0);
    expect(
      (JSON.parse(list.stdout) as { tenants: Array<{ name: string }> }).tenants.map((t) => t.name),
    ).toEqual(['Beta']);
  });
});
