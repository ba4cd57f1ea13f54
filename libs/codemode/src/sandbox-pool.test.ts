import type * as ChildProcessModule from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server } from 'node:http';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { getPriority } from 'node:os';
import v8 from 'node:v8';
import { afterEach, describe, expect, it } from 'vitest';
import { randomString } from '@warden/core';
import { createCloudflareClient, createSpecStore } from '@warden/cloudflare';
import type { CloudflareCredential } from '@warden/cloudflare';
import { createSandboxPool } from './sandbox-pool.ts';
import type { SandboxPool } from './sandbox-pool.ts';
import type { SandboxResult, Upstream } from './sandbox.types.ts';
import {
  echoUpstream,
  errorOf,
  ok,
  realSpecStore,
  repoRoot,
  resultOf,
  tempDir,
} from './test-support/fixtures.ts';

const pools: SandboxPool[] = [];
const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

async function startPool(options: Parameters<typeof createSandboxPool>[0]): Promise<SandboxPool> {
  const pool = createSandboxPool(options);
  pools.push(pool);
  await pool.ready();
  return pool;
}

interface Recorded {
  url: string;
  headers: IncomingHttpHeaders;
}

async function listen(
  handler: (url: string, headers: IncomingHttpHeaders) => unknown,
): Promise<{ port: number; connections: () => number }> {
  let connections = 0;
  const server = createServer((req, res) => {
    const body = JSON.stringify(handler(req.url ?? '', req.headers));
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  server.on('connection', () => connections++);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, connections: () => connections };
}

/** The front door's upstream, reduced to the essentials: credential injected in the parent, real HTTP. */
function cloudflareUpstream(baseUrl: string, credential: CloudflareCredential): Upstream {
  const client = createCloudflareClient({ baseUrl });
  return async (request, context) => {
    const response = await client.send(credential, { ...request, signal: context.signal });
    return {
      success: response.success,
      status: response.status,
      result: response.result,
      errors: response.errors,
      messages: response.messages,
    };
  };
}

describe('sandbox pool', () => {
  it('never lets a request reach any host but the configured upstream, nor the credential reach a child', async () => {
    const secret = `cfut_${randomString(40)}`;
    process.env.WARDEN_TEST_CLOUDFLARE_TOKEN = secret;
    // Record every message the parent sends to any child, at the fork that creates them.
    const sent: Buffer[] = [];
    const childProcess = createRequire(import.meta.url)('node:child_process') as typeof ChildProcessModule;
    const originalFork = childProcess.fork;
    childProcess.fork = ((...args: Parameters<typeof originalFork>) => {
      const child: ChildProcess = originalFork(...args);
      const send = child.send.bind(child) as (...sendArgs: unknown[]) => boolean;
      child.send = ((message: unknown, ...rest: unknown[]) => {
        sent.push(v8.serialize(message));
        return send(message, ...rest);
      }) as ChildProcess['send'];
      return child;
    }) as typeof originalFork;
    syncBuiltinESMExports();
    try {
      const received: Recorded[] = [];
      const upstreamServer = await listen((url, headers) => {
        received.push({ url, headers });
        return { success: true, result: { path: url }, errors: [], messages: [] };
      });
      const trap = await listen(() => ({ stolen: true }));
      const pool = await startPool({ spec: await realSpecStore(), size: 2 });
      const upstream = cloudflareUpstream(`http://127.0.0.1:${upstreamServer.port}/client/v4`, {
        type: 'api_token',
        apiToken: secret,
      });
      const trapHost = `127.0.0.1:${trap.port}`;
      const attempts = [
        { method: 'GET', path: `http://${trapHost}/steal` },
        { method: 'GET', path: `//${trapHost}/steal` },
        { method: 'GET', path: `/\\\\${trapHost}/steal` },
        { method: 'GET', path: `/..%2F..%2F..%2F${trapHost}` },
        { method: 'GET', path: `/zones%0d%0aHost:%20${trapHost}` },
        { method: 'GET', path: '/zones', headers: { host: trapHost } },
        { method: 'GET', path: '/zones', contentType: `text/plain\r\nHost: ${trapHost}` },
        { method: 'GET', path: '/zones', query: { [`x\r\nHost: ${trapHost}`]: '1' } },
        { method: 'CONNECT', path: trapHost },
        { method: 'GET', path: `/@${trapHost}/steal` },
        { method: 'GET', path: `/%2F%2F${trapHost}/steal` },
        { method: 'GET', path: '/zones', query: { name: `http://${trapHost}/` } },
      ];
      const result = await pool.execute(
        `async () => {
          const outcomes = [];
          for (const attempt of ${JSON.stringify(attempts)}) {
            try {
              const response = await cloudflare.request(attempt);
              outcomes.push('sent ' + response.result.path);
            } catch (e) {
              outcomes.push(e.code);
            }
          }
          outcomes.push(typeof fetch, typeof XMLHttpRequest, typeof WebSocket);
          return outcomes;
        }`,
        { tenant: 'ten_a', upstream },
      );
      expect(resultOf(result)).toEqual([
        ...Array(9).fill('invalid_request'),
        `sent /client/v4/@${trapHost}/steal`,
        `sent /client/v4/%2F%2F${trapHost}/steal`,
        `sent /client/v4/zones?name=http%3A%2F%2F${encodeURIComponent(trapHost)}%2F`,
        'undefined',
        'undefined',
        'undefined',
      ]);
      expect(trap.connections()).toBe(0);
      expect(received).toHaveLength(3);
      for (const request of received) {
        expect(request.headers.host).toBe(`127.0.0.1:${upstreamServer.port}`);
        expect(request.headers.authorization).toBe(`Bearer ${secret}`);
        expect(request.url.startsWith('/client/v4/')).toBe(true);
      }

      const needle = Buffer.from(secret);
      expect(sent.length).toBeGreaterThan(0);
      expect(sent.filter((message) => message.includes(needle))).toEqual([]);
      for (const child of pool.stats().children) {
        const environ = readFileSync(`/proc/${child.pid}/environ`);
        const names = environ
          .toString('utf8')
          .split('\0')
          .filter((entry) => entry !== '')
          .map((entry) => entry.split('=')[0]);
        expect(names.every((name) => name?.startsWith('NODE_CHANNEL_'))).toBe(true);
        expect(environ.includes(needle)).toBe(false);
        expect(readFileSync(`/proc/${child.pid}/cmdline`).includes(needle)).toBe(false);
      }
    } finally {
      childProcess.fork = originalFork;
      syncBuiltinESMExports();
      delete process.env.WARDEN_TEST_CLOUDFLARE_TOKEN;
    }
  });

  it("starts children under Node's permission model, reading only their own code and isolated-vm", async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 1 });
    const child = pool.stats().children[0];
    const cmdline = readFileSync(`/proc/${child?.pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline).toContain('--permission');
    expect(cmdline.filter((arg) => /^--allow-(fs-write|child-process|worker|wasi)/.test(arg))).toEqual([]);
    const readable = cmdline.filter((arg) => arg.startsWith('--allow-fs-read=')).map((arg) => arg.slice(16));
    const modules = path.join(repoRoot, 'node_modules');
    expect(readable.sort()).toEqual(
      [
        `${path.join(repoRoot, 'libs', 'codemode')}${path.sep}`,
        `${path.join(modules, 'isolated-vm')}${path.sep}`,
        `${path.join(modules, 'node-gyp-build')}${path.sep}`,
        '/etc/alpine-release',
      ].sort(),
    );
  });

  it("fails only the calls of a dead child's tenant that reached upstream, and replaces the child", async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 2 });
    const releases: Array<() => void> = [];
    let arrived: () => void = () => {};
    const bothArrived = new Promise<void>((resolve) => {
      arrived = () => releases.length === 2 && resolve();
    });
    const blocking: Upstream = () =>
      new Promise((resolve) => {
        releases.push(() => resolve(ok('done')));
        arrived();
      });
    const code = "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result";
    const calls = [
      pool.execute(code, { tenant: 'ten_a', upstream: blocking }),
      pool.execute(code, { tenant: 'ten_b', upstream: blocking }),
    ];
    await bothArrived;
    const victim = pool.stats().children.find((c) => c.tenant === 'ten_a');
    expect(
      pool
        .stats()
        .children.filter((c) => c.tenant === 'ten_b')
        .map((c) => c.pid),
    ).not.toContain(victim?.pid);
    process.kill(victim?.pid as number, 'SIGKILL');
    for (const release of releases) release();
    const [a, b] = (await Promise.all(calls)) as [SandboxResult, SandboxResult];

    expect(errorOf(a)).toEqual({
      code: 'sandbox_crashed',
      message: 'the sandbox process stopped while running this call; retry',
    });
    expect(a.stats.upstreamRequests).toBe(1);
    expect(resultOf(b)).toBe('done');

    await pool.ready();
    const stats = pool.stats();
    expect(stats.restarts).toBe(1);
    expect(stats.retried).toBe(0);
    expect(stats.children.map((c) => c.pid)).not.toContain(victim?.pid);
    expect(stats.children.filter((c) => c.kind === 'search' && c.ready)).toHaveLength(2);
    expect(
      resultOf(await pool.search("async () => spec.paths['/zones'].get.summary", { tenant: 'ten_a' })),
    ).toBe('List Zones');
    expect(
      resultOf(
        await pool.execute('async () => accountId', {
          tenant: 'ten_a',
          upstream: echoUpstream,
          accountId: 'a1',
        }),
      ),
    ).toBe('a1');
  });

  it('replaces a child after a number of executions without failing any call', async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 1, recycleAfterExecutions: 3 });
    const first = pool.stats().children.find((c) => c.kind === 'execute')?.pid;
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        pool.execute(`async () => ${i}`, { tenant: 'ten_a', upstream: echoUpstream }),
      ),
    );
    expect(results.map(resultOf)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    await pool.ready();
    const stats = pool.stats();
    expect(stats.recycled).toBeGreaterThanOrEqual(1);
    expect(stats.restarts).toBe(0);
    expect(stats.children.filter((c) => !c.retiring).map((c) => c.pid)).not.toContain(first);
    expect(
      resultOf(await pool.search("async () => spec.paths['/zones'].get.summary", { tenant: 'ten_a' })),
    ).toBe('List Zones');
  });

  it('reloads the spec without a restart', async () => {
    const dir = tempDir('warden-codemode-reload-');
    const file = path.join(dir, 'openapi.json');
    const document = (route: string): string =>
      JSON.stringify({ openapi: '3.0.3', paths: { [route]: { get: { summary: route, responses: {} } } } });
    writeFileSync(file, document('/first'));
    const store = createSpecStore({ path: file, cacheDir: path.join(dir, 'cache') });
    await store.load();
    const pool = await startPool({ spec: store, size: 2 });
    const paths = 'async () => Object.keys(spec.paths)';
    const tenant = { tenant: 'ten_a' };
    expect(resultOf(await pool.search(paths, tenant))).toEqual(['/first']);

    writeFileSync(file, document('/second'));
    const { spec } = await store.reload();
    await pool.reloadSpec();
    expect(pool.stats().specVersion).toBe(spec.version);
    for (let i = 0; i < 4; i++) expect(resultOf(await pool.search(paths, tenant))).toEqual(['/second']);

    const byPath = await startPool({ spec: spec.documentFile, size: 1 });
    expect(resultOf(await byPath.search(paths, tenant))).toEqual(['/second']);
  });

  it('serves calls made before the children are ready once they are', async () => {
    const pool = createSandboxPool({ spec: await realSpecStore(), size: 2 });
    pools.push(pool);
    const [search, execute] = await Promise.all([
      pool.search("async () => spec.paths['/zones'].get.summary", { tenant: 'ten_a' }),
      pool.execute('async () => accountId', { tenant: 'ten_a', upstream: echoUpstream, accountId: 'early' }),
    ]);
    expect(resultOf(search)).toBe('List Zones');
    expect(resultOf(execute)).toBe('early');
  });

  it('refuses calls once closed', async () => {
    const pool = createSandboxPool({ spec: await realSpecStore(), size: 1 });
    await pool.close();
    expect(errorOf(await pool.search('async () => 1', { tenant: 'ten_a' })).code).toBe('unavailable');
    expect(pool.stats().alive).toBe(0);
  });
});

describe('sandbox pool: one tenant cannot crowd another out', () => {
  /** Search code that keeps its child busy for `ms` of CPU. */
  const busySearch = (ms: number) =>
    `async () => { const end = Date.now() + ${ms}; while (Date.now() < end) {} return 'busy'; }`;

  it("a tenant flooding search holds at most all search children but one: another tenant's search runs at once", async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 2 });
    const finished: string[] = [];
    const flood = Array.from({ length: 6 }, (_, i) =>
      pool.search(busySearch(700), { tenant: 'ten_flood' }).then((result) => {
        finished.push(`flood${i}`);
        return result;
      }),
    );
    // The flood is waiting and running before the other tenant asks.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const running = pool.stats().children.filter((c) => c.kind === 'search' && c.searches > 0);
    expect(running).toHaveLength(1);
    const other = await pool.search("async () => spec.paths['/zones'].get.summary", { tenant: 'ten_other' });
    finished.push('other');
    expect(resultOf(other)).toEqual(expect.any(String));
    // Without the cap (and the fair order), it waited for every search queued before it.
    expect(finished.filter((name) => name.startsWith('flood')).length).toBeLessThanOrEqual(1);
    for (const result of await Promise.all(flood)) expect(resultOf(result)).toBe('busy');
  });

  it('calls of one tenant beyond its waiting allowance are refused at once, naming the reason; others still run', async () => {
    const pool = await startPool({
      spec: await realSpecStore(),
      size: 1,
      spareChildren: 0,
      maxExecuteChildren: 2,
      maxExecutionsPerChild: 1,
      maxQueuedPerTenant: 2,
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const held: Upstream = async (request) => {
      await gate;
      return ok({ echo: request.path });
    };
    const code = "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.echo";
    // One runs (waiting for its upstream answer), two wait for the tenant's child.
    const accepted = [1, 2, 3].map(() => pool.execute(code, { tenant: 'ten_flood', upstream: held }));
    await expect.poll(() => pool.stats().queued).toBe(2);
    const refused = await pool.execute(code, { tenant: 'ten_flood', upstream: held });
    expect(errorOf(refused).code).toBe('rate_limited');
    expect(errorOf(refused).message).toContain('2 calls of this organization are already waiting');
    // Another tenant is not counted against it: it gets the other child.
    const other = pool.execute(code, { tenant: 'ten_other', upstream: echoUpstream });
    release();
    expect(resultOf(await other)).toEqual(expect.objectContaining({ path: '/zones' }));
    for (const result of await Promise.all(accepted)) expect(resultOf(result)).toBe('/zones');
  });

  it('runs agent code below the service: every thread of every started child has a lower scheduling priority', async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 2 });
    await pool.execute('async () => 1', { tenant: 'ten_a', upstream: echoUpstream });
    // A child starts at the service's priority and goes down before it takes any call.
    await expect.poll(() => pool.stats().children.every((c) => c.ready)).toBe(true);
    const pids = pool.stats().children.map((c) => c.pid);
    expect(pids.length).toBeGreaterThanOrEqual(3);
    for (const pid of pids) {
      for (const tid of readdirSync(`/proc/${pid}/task`))
        expect(getPriority(Number(tid)), `pid ${pid} thread ${tid}`).toBe(10);
    }
    expect(getPriority(process.pid)).toBe(0);
  });
});

describe('sandbox pool: CPU between tenants', () => {
  /** Execute code that keeps a thread busy for `ms`. */
  const busy = (ms: number) =>
    `async () => { const end = Date.now() + ${ms}; let n = 0; while (Date.now() < end) n++; return n > 0; }`;
  /** The niceness the kernel has for every thread of the tenant's children. */
  const kernelNice = (pool: SandboxPool, tenant: string) => {
    const nice = new Set<number>();
    for (const child of pool.stats().children.filter((c) => c.tenant === tenant)) {
      for (const tid of readdirSync(`/proc/${child.pid}/task`)) nice.add(getPriority(Number(tid)));
    }
    return [...nice];
  };
  const niceOf = (pool: SandboxPool, tenant: string) =>
    Math.max(
      ...pool
        .stats()
        .children.filter((c) => c.tenant === tenant)
        .map((c) => c.nice),
    );

  it('a tenant running CPU-bound code on every thread it can get runs below another tenant that wants CPU too, and comes back once alone', async () => {
    const pool = await startPool({ spec: await realSpecStore(), size: 2, releaseIdleMs: 60_000 });
    let bRunning = true;
    const aCalls = Array.from({ length: 8 }, () =>
      pool.execute(busy(6_000), { tenant: 'ten_a', upstream: echoUpstream }),
    );
    const bCalls = (async () => {
      while (bRunning) {
        expect(resultOf(await pool.execute(busy(300), { tenant: 'ten_b', upstream: echoUpstream }))).toBe(
          true,
        );
      }
    })();
    /** What the pool says of the tenant's children is what the kernel has for each of their threads. */
    const kernelAgrees = (tenant: string) => {
      const before = niceOf(pool, tenant);
      const kernel = kernelNice(pool, tenant);
      return kernel.length === 1 && kernel[0] === before && niceOf(pool, tenant) === before;
    };
    try {
      // B's calls wait for a child to start while A holds the cores: that counts as wanting CPU.
      await expect.poll(() => niceOf(pool, 'ten_a'), { timeout: 5_000, interval: 100 }).toBeGreaterThan(10);
      await expect.poll(() => niceOf(pool, 'ten_b'), { timeout: 10_000, interval: 100 }).toBe(10);
      await expect.poll(() => niceOf(pool, 'ten_a'), { timeout: 5_000, interval: 100 }).toBeGreaterThan(12);
      expect(niceOf(pool, 'ten_b')).toBe(10);
      // The kernel has it for every thread of A's children (isolates run on threads of their own).
      await expect.poll(() => kernelAgrees('ten_a'), { timeout: 2_000, interval: 50 }).toBe(true);
      expect(kernelNice(pool, 'ten_b')).toEqual([10]);
    } finally {
      bRunning = false;
      await bCalls;
    }
    // Alone, A comes back a step every half second: it is steered only while another tenant competes.
    await expect.poll(() => niceOf(pool, 'ten_a'), { timeout: 10_000, interval: 100 }).toBe(10);
    expect(kernelNice(pool, 'ten_a')).toEqual([10]);
    for (const result of await Promise.all(aCalls)) expect(resultOf(result)).toBe(true);
  });
});
