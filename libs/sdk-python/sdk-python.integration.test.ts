import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { devNull, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, specFixturePath, startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare, TestDatabase } from '@warden/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The Python SDK's pytest suite (libs/sdk-python/tests) against a live Warden: the real service
 * (`node services/connector/src/main.ts`) on a fresh PostgreSQL database, the shared Redis and
 * the fake Cloudflare API. The package is pip-installed offline into a fresh virtual environment
 * first, exactly as the README says, and pytest runs with that environment's interpreter.
 * HAProxy in front of Warden gives the retry tests real 429 (its rate limit, with Retry-After)
 * and 503 (no server available) answers.
 */

const SDK_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(SDK_DIR, '../..');
/** Cloudflare user tokens handed to the tests (each vaulted once at most). */
const TOKEN_COUNT = 40;
const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];
/**
 * HAProxy's limit for the 429 tests: a request is refused while the previous one from the same
 * address is less than this many seconds old; its Retry-After is one second longer.
 */
const GATEWAY_WINDOW_SECONDS = 3;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  /** stdout and stderr as they came, for failure messages. */
  readonly output: string;
}

/** Runs a command to completion. */
async function run(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env: Record<string, string> },
): Promise<Run> {
  const child = spawn(command, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env, stdio: 'pipe' });
  let stdout = '';
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    output += chunk.toString('utf8');
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, output };
}

/** The environment a child gets: PATH and TMPDIR only, never the vitest worker's whole environment. */
function baseEnv(): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
  };
}

/** The machine's Python that has pytest (python3 on PATH, or Debian's with python3-pytest). */
function pythonWithPytest(): string {
  const candidates = [...(process.env.PYTHON ? [process.env.PYTHON] : []), 'python3', '/usr/bin/python3'];
  const found = candidates.find(
    (python) => spawnSync(python, ['-m', 'pytest', '--version'], { stdio: 'ignore' }).status === 0,
  );
  if (!found) {
    throw new Error(
      `no Python with pytest among ${candidates.join(', ')}: install Debian's python3-pytest and python3-venv (.ci/run does)`,
    );
  }
  return found;
}

function executable(name: string, fallbacks: readonly string[]): string {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean);
  const found = [...dirs.map((dir) => path.join(dir, name)), ...fallbacks].find((file) => existsSync(file));
  if (!found)
    throw new Error(`${name} not found on PATH or in ${fallbacks.join(', ')} (.ci/run installs it)`);
  return found;
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) throw new Error(`exited before listening on ${port}:\n${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.end();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await delay(50);
  }
  throw new Error(`nothing listens on ${port}:\n${output()}`);
}

interface Service {
  readonly child: ChildProcess;
  output(): string;
  stop(): Promise<number | null>;
}

function startService(command: string, args: readonly string[], env: Record<string, string>): Service {
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  // Kept whole: every line is searched for leaked credentials at the end.
  const chunks: string[] = [];
  child.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => chunks.push(chunk.toString('utf8')));
  return {
    child,
    output: () => chunks.join(''),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const exited = once(child, 'exit');
      const timeout = delay(40_000).then(() => 'timeout' as const);
      if ((await Promise.race([exited, timeout])) === 'timeout') {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`${command} did not stop on SIGTERM:\n${chunks.join('').slice(-4000)}`);
      }
      return child.exitCode;
    },
  };
}

describe('the Python SDK (libs/sdk-python) against a live Warden', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'warden-sdk-python-'));
  const venv = path.join(work, 'venv');
  const adminToken = randomBytes(32).toString('hex');
  /** Every credential the run handed out; none may appear in Warden's output. */
  const secrets = new Set<string>([adminToken]);
  let db: TestDatabase | undefined;
  let cf: FakeCloudflare | undefined;
  let warden: Service | undefined;
  let gateway: Service | undefined;
  let pytestEnv: Record<string, string>;

  beforeAll(async () => {
    const python = pythonWithPytest();
    const haproxy = executable('haproxy', ['/usr/sbin/haproxy']);
    const specPath = specFixturePath();

    // The documented install, in a fresh virtual environment, with no index to fetch from.
    // --system-site-packages only so pytest (a package of the machine's Python) can run there.
    const created = await run(python, ['-m', 'venv', '--system-site-packages', venv], { env: baseEnv() });
    expect(created.code, `python -m venv failed:\n${created.output}`).toBe(0);
    const pip = await run(
      path.join(venv, 'bin/python'),
      ['-m', 'pip', 'install', '--no-input', 'libs/sdk-python'],
      {
        env: {
          ...baseEnv(),
          PIP_NO_INDEX: '1',
          PIP_CONFIG_FILE: devNull,
          PIP_NO_CACHE_DIR: '1',
          PIP_DISABLE_PIP_VERSION_CHECK: '1',
          PYTHONDONTWRITEBYTECODE: '1',
        },
      },
    );
    expect(pip.code, `pip install libs/sdk-python failed offline:\n${pip.output}`).toBe(0);

    // What `npm run sdk:generate:python` reads, for the staleness test; made while Warden starts.
    const dumped = run(process.execPath, ['--no-node-snapshot', 'services/connector/src/openapi-dump.ts'], {
      env: baseEnv(),
    });

    const fake = await startFakeCloudflare({ specPath });
    cf = fake;
    const alice = fake.state.createUser({ email: 'alice@example.com' });
    const acme = fake.state.createAccount({ name: 'Acme', members: [alice.id] });
    fake.state.createZone({ accountId: acme.id, name: 'sdk-example.com' });
    const tokens = Array.from(
      { length: TOKEN_COUNT },
      () =>
        fake.state.createUserToken({ userId: alice.id, permissions: PERMISSIONS, accounts: [acme.id] }).value,
    );
    for (const token of [...tokens, alice.globalApiKey]) secrets.add(token);

    db = await createTestDatabase({ migrate: false });
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    warden = startService(process.execPath, ['--no-node-snapshot', 'services/connector/src/main.ts'], {
      ...baseEnv(),
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_URL: url,
      DATABASE_URL: db.url,
      REDIS_URL: process.env.REDIS_URL ?? '',
      DATA_DIR: path.join(work, 'data'),
      WARDEN_ADMIN_TOKEN: adminToken,
      LOG_LEVEL: 'trace',
      CLOUDFLARE_API_BASE: fake.url,
      CLOUDFLARE_SPEC_PATH: specPath,
      SANDBOX_POOL_SIZE: '1',
    });
    const deadline = Date.now() + 180_000;
    for (let ready = false; !ready;) {
      if (warden.child.exitCode !== null) throw new Error(`Warden exited:\n${warden.output()}`);
      if (Date.now() > deadline)
        throw new Error(`Warden was not ready in time:\n${warden.output().slice(-4000)}`);
      ready = await fetch(`${url}/readyz`)
        .then((res) => res.status === 200)
        .catch(() => false);
      if (!ready) await delay(250);
    }

    const dump = await dumped;
    expect(dump.code, `openapi-dump failed:\n${dump.output}`).toBe(0);
    writeFileSync(path.join(work, 'openapi.json'), dump.stdout);

    const tenant = async (name: string): Promise<string> => {
      const res = await fetch(`${url}/admin/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      expect(res.status).toBe(201);
      const { api_key: apiKey } = (await res.json()) as { api_key: string };
      secrets.add(apiKey);
      return apiKey;
    };
    const apiKey = await tenant('Python SDK tenant');
    const otherApiKey = await tenant('Another tenant');

    const [limitedPort, downPort] = [await freePort(), await freePort()];
    const config = path.join(work, 'haproxy.cfg');
    writeFileSync(
      config,
      [
        'defaults',
        '  mode http',
        '  timeout connect 5s',
        '  timeout client 60s',
        '  timeout server 60s',
        // A gateway's real rate limit: each request refreshes its address's entry, which expires
        // after the window; a request finding a live entry is refused.
        'frontend limited',
        `  bind 127.0.0.1:${limitedPort}`,
        `  stick-table type ip size 16 expire ${GATEWAY_WINDOW_SECONDS}s store http_req_cnt`,
        '  http-request track-sc0 src',
        `  http-request return status 429 content-type text/plain string "rate limited by the gateway" hdr Retry-After ${GATEWAY_WINDOW_SECONDS + 1} if { sc_http_req_cnt(0) gt 1 }`,
        '  default_backend warden',
        // Every replica down: the load balancer answers 503 itself.
        'frontend down',
        `  bind 127.0.0.1:${downPort}`,
        '  default_backend no_replica',
        'backend warden',
        `  server warden 127.0.0.1:${port}`,
        'backend no_replica',
        '',
      ].join('\n'),
    );
    gateway = startService(haproxy, ['-db', '-f', config], baseEnv());
    await waitForPort(limitedPort, gateway.child, gateway.output);
    await waitForPort(downPort, gateway.child, gateway.output);

    const fixture = path.join(work, 'fixture.json');
    writeFileSync(
      fixture,
      JSON.stringify({
        cloudflare: {
          user_id: alice.id,
          email: alice.email,
          global_api_key: alice.globalApiKey,
          account_id: acme.id,
          zone_name: 'sdk-example.com',
          tokens,
        },
        gateway_window_seconds: GATEWAY_WINDOW_SECONDS,
      }),
    );
    pytestEnv = {
      ...baseEnv(),
      PYTHONDONTWRITEBYTECODE: '1',
      // Only the SDK's own conftest: plugins installed on the machine must not change the run.
      PYTEST_DISABLE_PLUGIN_AUTOLOAD: '1',
      WARDEN_URL: url,
      WARDEN_API_KEY: apiKey,
      WARDEN_OTHER_API_KEY: otherApiKey,
      WARDEN_RATE_LIMITED_URL: `http://127.0.0.1:${limitedPort}`,
      WARDEN_UNAVAILABLE_URL: `http://127.0.0.1:${downPort}`,
      WARDEN_OPENAPI_JSON: path.join(work, 'openapi.json'),
      WARDEN_SDK_TEST_FIXTURE: fixture,
      WARDEN_SDK_TEST_SECRETS_OUT: path.join(work, 'secrets.json'),
      WARDEN_SDK_EXPECT_PREFIX: venv,
    };
  }, 300_000);

  afterAll(async () => {
    await gateway?.stop();
    await warden?.stop();
    await cf?.close();
    await db?.drop();
    rmSync(work, { recursive: true, force: true });
  });

  it('passes its pytest suite, none skipped', async () => {
    const report = path.join(work, 'pytest.xml');
    const pytest = await run(
      path.join(venv, 'bin/python'),
      ['-m', 'pytest', '-q', '-rfEs', `--junitxml=${report}`, 'tests'],
      { cwd: SDK_DIR, env: pytestEnv },
    );
    expect(
      pytest.code,
      `pytest failed:\n${pytest.output}\n--- Warden:\n${warden?.output().slice(-4000)}`,
    ).toBe(0);
    const suite = /<testsuite [^>]*>/.exec(readFileSync(report, 'utf8'))?.[0] ?? '';
    const count = (name: string) => Number(new RegExp(`${name}="(\\d+)"`).exec(suite)?.[1] ?? NaN);
    expect(count('tests'), pytest.output).toBeGreaterThan(0);
    expect(
      { skipped: count('skipped'), failures: count('failures'), errors: count('errors') },
      pytest.output,
    ).toEqual({
      skipped: 0,
      failures: 0,
      errors: 0,
    });
  }, 600_000);

  it("leaves no credential in Warden's logs", async () => {
    const code = await warden?.stop();
    const logs = warden?.output() ?? '';
    expect(code, logs.slice(-4000)).toBe(0);
    // The logs were captured (access lines with method, path and status).
    expect(logs).toMatch(/"req":\{"method":"POST","path":"\/api\/v1\/execute_tool"/);
    for (const secret of JSON.parse(
      readFileSync(pytestEnv.WARDEN_SDK_TEST_SECRETS_OUT ?? '', 'utf8'),
    ) as string[]) {
      secrets.add(secret);
    }
    const leaked = [...secrets].filter((secret) => logs.includes(secret));
    expect(leaked.length, 'a credential reached the service logs').toBe(0);
  }, 60_000);
});
