import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { createSandboxPool } from './sandbox-pool.ts';
import type { SandboxPool } from './sandbox-pool.ts';
import type {
  ExecuteOptions,
  R2Request,
  R2Upstream,
  TailRequest,
  TailUpstream,
  Upstream,
  UpstreamRequest,
} from './sandbox.types.ts';
import { HOST_DETAILS, echoUpstream, errorOf, ok, realSpecStore, resultOf } from './test-support/fixtures.ts';

let pool: SandboxPool;

beforeAll(async () => {
  pool = createSandboxPool({
    spec: await realSpecStore(),
    size: 1,
    limits: { memoryMb: 64, cpuMs: 1_000, wallMs: 3_000 },
  });
  await pool.ready();
});

afterAll(() => pool.close());

function run(code: string, options: Partial<ExecuteOptions> = {}): ReturnType<SandboxPool['execute']> {
  return pool.execute(code, { tenant: 'ten_execute_test', upstream: echoUpstream, ...options });
}

/** Every global a bare V8 context has under ECMAScript (plus V8's current proposals), none of the host. */
const ECMASCRIPT_GLOBALS = [
  'AggregateError',
  'Array',
  'ArrayBuffer',
  'AsyncDisposableStack',
  'BigInt',
  'BigInt64Array',
  'BigUint64Array',
  'Boolean',
  'DataView',
  'Date',
  'DisposableStack',
  'Error',
  'EvalError',
  'Float16Array',
  'Float32Array',
  'Float64Array',
  'Function',
  'Infinity',
  'Int16Array',
  'Int32Array',
  'Int8Array',
  'Intl',
  'Iterator',
  'JSON',
  'Map',
  'Math',
  'NaN',
  'Number',
  'Object',
  'Promise',
  'Proxy',
  'RangeError',
  'ReferenceError',
  'Reflect',
  'RegExp',
  'Set',
  'String',
  'SuppressedError',
  'Symbol',
  'SyntaxError',
  'TypeError',
  'URIError',
  'Uint16Array',
  'Uint32Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'WeakMap',
  'WeakSet',
  'decodeURI',
  'decodeURIComponent',
  'encodeURI',
  'encodeURIComponent',
  'escape',
  'eval',
  'globalThis',
  'isFinite',
  'isNaN',
  'parseFloat',
  'parseInt',
  'undefined',
  'unescape',
];

describe('execute', () => {
  it('exposes exactly cloudflare.request, r2, tail, accountId and console', async () => {
    const result = await run(
      `async () => ({
      keys: Object.keys(globalThis).sort(),
      extra: Object.getOwnPropertyNames(globalThis).filter((n) => !${JSON.stringify(ECMASCRIPT_GLOBALS)}.includes(n)).sort(),
      cloudflare: Object.keys(cloudflare),
      r2: Object.keys(r2),
      frozen: Object.isFrozen(r2),
      tail: Object.keys(tail),
      tailFrozen: Object.isFrozen(tail),
      accountId,
      absent: ['fetch', 'require', 'process', 'setTimeout', 'setInterval', 'queueMicrotask', 'WebAssembly', 'ivm', '_ivm', '$0']
        .filter((n) => typeof globalThis[n] !== 'undefined'),
    })`,
      { accountId: 'acc_123' },
    );
    expect(resultOf(result)).toEqual({
      keys: ['accountId', 'cloudflare', 'console', 'r2', 'tail'],
      extra: ['accountId', 'cloudflare', 'console', 'r2', 'tail'],
      cloudflare: ['request'],
      r2: ['list', 'head', 'get', 'put', 'delete'],
      frozen: true,
      tail: ['worker'],
      tailFrozen: true,
      accountId: 'acc_123',
      absent: [],
    });
    expect(resultOf(await run('async () => typeof accountId'))).toBe('undefined');
  });

  it('sends validated requests upstream and returns copies of the responses', async () => {
    const seen: UpstreamRequest[] = [];
    const shared = { zones: [{ id: 'z1' }] };
    const upstream: Upstream = async (request, context) => {
      seen.push(request);
      expect(context.signal.aborted).toBe(false);
      return ok(shared);
    };
    const result = await run(
      `async () => {
        const body = { name: 'www', ttl: 60, when: new Date(0) };
        const first = await cloudflare.request({ method: 'post', path: '/zones/z1/dns_records', body, query: { page: 1 } });
        body.name = 'changed after the call';
        first.result.zones[0].id = 'changed in the sandbox';
        const second = await cloudflare.request({ method: 'GET', path: '/zones' });
        console.log('status', first.status);
        return [first.success, second.result.zones[0].id];
      }`,
      { upstream },
    );
    expect(resultOf(result)).toEqual([true, 'z1']);
    expect(result.logs).toEqual(['status 200']);
    expect(result.stats.upstreamRequests).toBe(2);
    expect(shared.zones[0]?.id).toBe('z1');
    expect(seen[0]).toEqual({
      method: 'POST',
      path: '/zones/z1/dns_records',
      query: { page: 1 },
      body: { name: 'www', ttl: 60, when: '1970-01-01T00:00:00.000Z' },
    });
  });

  it('passes WardenError refusals through with their code, catchable or as the execution error', async () => {
    const refuse: Upstream = async (request) => {
      throw new WardenError('policy_denied', `${request.method} ${request.path} refused: read_only`);
    };
    const caught = await run(
      "async () => { try { await cloudflare.request({ method: 'DELETE', path: '/zones/z1' }); } catch (e) { return [e instanceof Error, e.code, e.message]; } }",
      { upstream: refuse },
    );
    expect(resultOf(caught)).toEqual([true, 'policy_denied', 'DELETE /zones/z1 refused: read_only']);
    const uncaught = await run("async () => cloudflare.request({ method: 'DELETE', path: '/zones/z1' })", {
      upstream: refuse,
    });
    expect(errorOf(uncaught)).toEqual({
      code: 'policy_denied',
      message: 'DELETE /zones/z1 refused: read_only',
    });
    const limited: Upstream = async () => {
      throw new WardenError('rate_limited', 'the Cloudflare budget is exhausted; retry in 3 s', {
        retryAfterSeconds: 3,
      });
    };
    expect(
      errorOf(
        await run("async () => cloudflare.request({ method: 'GET', path: '/zones' })", { upstream: limited }),
      ).code,
    ).toBe('rate_limited');
  });

  it('does not let code forge an error code or see host errors', async () => {
    expect(
      errorOf(await run("async () => { throw Object.assign(new Error('x'), { code: 'policy_denied' }); }"))
        .code,
    ).toBe('execution_error');
    const crashing: Upstream = async () => {
      throw new Error('connect ECONNREFUSED at /work/main/services/connector/src/secret.ts:12');
    };
    const error = errorOf(
      await run("async () => cloudflare.request({ method: 'GET', path: '/zones' })", { upstream: crashing }),
    );
    expect(error.code).toBe('upstream_error');
    expect(error.message).not.toMatch(HOST_DETAILS);
  });

  it('refuses invalid requests before they reach the upstream', async () => {
    let calls = 0;
    const counting: Upstream = async (request) => {
      calls++;
      return ok(request);
    };
    const result = await run(
      `async () => {
        const outcomes = [];
        for (const request of [
          { method: 'GET', path: 'https://example.com/zones' },
          { method: 'GET', path: '/zones', headers: { authorization: 'Bearer stolen' } },
          { method: 'GET', path: '/zones', query: { f: () => 1 } },
          { method: 'GET', path: '/zones', body: { n: 1n } },
          'GET /zones',
        ]) {
          try { await cloudflare.request(request); outcomes.push('sent'); } catch (e) { outcomes.push(e.code); }
        }
        return outcomes;
      }`,
      { upstream: counting },
    );
    expect(resultOf(result)).toEqual(Array(5).fill('invalid_request'));
    expect(calls).toBe(0);
  });

  it('sends r2 calls to the host as validated requests, the call account by default', async () => {
    const seen: R2Request[] = [];
    const r2: R2Upstream = async (request) => {
      seen.push(request);
      return { key: request.key ?? null, op: request.op };
    };
    const result = await run(
      `async () => {
        const got = await r2.get({ bucket: 'media', key: 'a/b.txt', as: 'json', range: { offset: 2, length: 3 } });
        await r2.put({ bucket: 'media', key: 'c.json', body: { n: 1 }, as: 'json', jurisdiction: 'eu' });
        await r2.list({ bucket: 'media', prefix: 'a/', limit: 10, accountId: 'other' });
        const refusals = [];
        for (const bad of [{ bucket: 'No_Such' , key: 'k' }, { bucket: 'media', key: '../x' }, { bucket: 'media', key: 'k', method: 'POST' }, { bucket: 'media', key: 'k', range: { suffix: 1, offset: 1 } }]) {
          try { await r2.get(bad); } catch (e) { refusals.push(e.code + ' ' + e.message); }
        }
        return { got, refusals };
      }`,
      { accountId: 'acc1', r2 },
    );
    const value = resultOf(result) as { got: unknown; refusals: string[] };
    expect(value.got).toEqual({ key: 'a/b.txt', op: 'get' });
    expect(seen).toEqual([
      {
        op: 'get',
        accountId: 'acc1',
        jurisdiction: 'default',
        bucket: 'media',
        key: 'a/b.txt',
        as: 'json',
        range: { offset: 2, length: 3 },
      },
      {
        op: 'put',
        accountId: 'acc1',
        jurisdiction: 'eu',
        bucket: 'media',
        key: 'c.json',
        as: 'json',
        body: '{"n":1}',
      },
      { op: 'list', accountId: 'other', jurisdiction: 'default', bucket: 'media', prefix: 'a/', limit: 10 },
    ]);
    expect(value.refusals).toEqual([
      expect.stringMatching(/^invalid_request r2\.get: bucket must be an R2 bucket name/),
      expect.stringMatching(/^invalid_request r2\.get: key must not have empty, "\." or "\.\." segments/),
      expect.stringMatching(/^invalid_request r2\.get: "method" is not a field of r2\.get/),
      expect.stringMatching(/^invalid_request r2\.get: range takes suffix alone/),
    ]);
    // Without an r2 host the calls are refused, and they count against the request limit.
    expect(
      errorOf(await run(`async () => r2.head({ bucket: 'media', key: 'k' })`, { accountId: 'acc1' })),
    ).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('R2 is not available here'),
    });
    const limited = await run(`async () => { for (;;) await r2.head({ bucket: 'media', key: 'k' }); }`, {
      accountId: 'acc1',
      r2,
      limits: { maxUpstreamRequests: 3 },
    });
    expect(errorOf(limited)).toMatchObject({
      code: 'too_many_requests',
      message: expect.stringContaining('r2: this execution reached its limit of 3'),
    });
  });

  it('sends tail.worker to the host validated, and moves the wall-clock deadline out by the tail', async () => {
    const seen: TailRequest[] = [];
    // Longer than the 1 s wall-clock limit below: the tail's seconds extend it.
    const tail: TailUpstream = async (request) => {
      seen.push(request);
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      return { events: [], script: request.script };
    };
    const result = await run(
      `async () => {
        const got = await tail.worker({ script: 'api', seconds: 2, filters: { status: ['error'], sample_rate: 0.5 } });
        const refusals = [];
        for (const bad of [{ script: 'api', seconds: 61 }, { script: 'a b', seconds: 1 }, { script: 'api', seconds: 1, maxEvents: 0 }, { script: 'api', seconds: 1, filters: { ip: ['1.1.1.1'] } }, { script: 'api', seconds: 1, follow: true }]) {
          try { await tail.worker(bad); } catch (e) { refusals.push(e.code + ' ' + e.message); }
        }
        return { got, refusals };
      }`,
      { accountId: 'acc1', tail, limits: { wallMs: 1_000 } },
    );
    const value = resultOf(result) as { got: unknown; refusals: string[] };
    expect(value.got).toEqual({ events: [], script: 'api' });
    expect(seen).toEqual([
      {
        accountId: 'acc1',
        script: 'api',
        seconds: 2,
        maxEvents: 100,
        filters: { status: ['error'], sampleRate: 0.5 },
      },
    ]);
    expect(value.refusals).toEqual([
      'invalid_request tail.worker: seconds must be a whole number from 1 to 60',
      expect.stringMatching(/^invalid_request tail\.worker: script must be the name of a Worker/),
      'invalid_request tail.worker: maxEvents must be a whole number from 1 to 1000',
      expect.stringMatching(/^invalid_request tail\.worker: filters\.ip is not a filter/),
      expect.stringMatching(/^invalid_request tail\.worker: follow is not a parameter/),
    ]);
    // An execution's tails add at most 60 s (and their grace) to its deadline.
    const tooLong = await run(
      `async () => { await tail.worker({ script: 'api', seconds: 60 }); return tail.worker({ script: 'api', seconds: 30 }); }`,
      { accountId: 'acc1', tail: async () => ({ events: [] }) },
    );
    expect(errorOf(tooLong)).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining("one execution's tails may add at most 80 s to its deadline"),
    });
    // Without a tail host the calls are refused.
    expect(errorOf(await run(`async () => tail.worker({ script: 'api', seconds: 1 })`))).toMatchObject({
      code: 'invalid_request',
      message: expect.stringContaining('tails are not available here'),
    });
  });

  it('ends a running tail (its signal aborts) when the execution is killed', async () => {
    let aborted: Promise<void> | undefined;
    const tail: TailUpstream = (_request, context) => {
      aborted = new Promise((resolve) => context.signal.addEventListener('abort', () => resolve()));
      return new Promise(() => {});
    };
    const result = await run(`async () => { tail.worker({ script: 'api', seconds: 30 }); for (;;) {} }`, {
      accountId: 'acc1',
      tail,
      limits: { cpuMs: 300 },
    });
    expect(errorOf(result).code).toBe('timeout');
    await expect(aborted).resolves.toBeUndefined();
  });

  it('stops at the per-execution request limit', async () => {
    const result = await run(
      "async () => { for (let i = 0; i < 10; i++) await cloudflare.request({ method: 'GET', path: '/zones' }); }",
      { limits: { maxUpstreamRequests: 3 } },
    );
    expect(errorOf(result).code).toBe('too_many_requests');
    expect(result.stats.upstreamRequests).toBe(3);
  });

  it.each([
    ['the Function constructor via this', "async () => this.constructor.constructor('return process')()"],
    [
      'the Function constructor via a promise',
      "async () => Promise.resolve().constructor.constructor('return process')()",
    ],
    ['require', "async () => require('child_process')"],
    ['import()', "async () => import('fs')"],
    ['the request function', "async () => cloudflare.request.constructor('return process')()"],
  ])('contains escape attempts through %s', async (_name, code) => {
    const error = errorOf(await run(code));
    expect(error.code).toBe('execution_error');
    expect(error.message).not.toMatch(HOST_DETAILS);
  });

  it.each([
    ['a synchronous infinite loop', 'async () => { while (true) {} }', 'timeout'],
    [
      'an async infinite loop',
      "async () => { while (true) await cloudflare.request({ method: 'GET', path: '/zones' }).catch(() => {}); }",
      'timeout',
    ],
    [
      'a microtask flood',
      'async () => { const f = () => { Promise.resolve().then(f); }; f(); return 1; }',
      'timeout',
    ],
  ])('stops %s', async (_name, code, expected) => {
    const result = await run(code, { limits: { maxUpstreamRequests: 1_000_000 } });
    expect(errorOf(result).code).toBe(expected);
    expect(errorOf(result).message).not.toMatch(HOST_DETAILS);
  });

  it('stops a memory bomb at the memory limit', async () => {
    // A CPU budget the bomb cannot reach first: V8 collects garbage hard near the heap limit.
    const result = await run(
      'async () => { const keep = []; while (true) keep.push(new Array(4e6).fill(1.5)); }',
      {
        limits: { cpuMs: 60_000, wallMs: 60_000 },
      },
    );
    expect(errorOf(result)).toEqual({
      code: 'memory_limit',
      message: 'the code used more than the 64 MB memory limit',
    });
  });

  it('refuses resizable ArrayBuffers (they grow outside the memory limit) and keeps ordinary ones working', async () => {
    const refused = await run('async () => new ArrayBuffer(0, { maxByteLength: 2 ** 28 })');
    expect(errorOf(refused)).toEqual({
      code: 'execution_error',
      message: expect.stringContaining(
        'resizable ArrayBuffers (maxByteLength) are not available in the sandbox',
      ),
    });
    const ordinary = await run(`async () => {
      const buffer = new ArrayBuffer(16);
      const bytes = new Uint8Array(buffer);
      bytes[0] = 7;
      class Sub extends ArrayBuffer {}
      return {
        isBuffer: buffer instanceof ArrayBuffer,
        constructorIsGlobal: bytes.buffer.constructor === ArrayBuffer,
        sliced: new Uint8Array(buffer.slice(0, 2))[0],
        moved: new Uint8Array(buffer.transfer(4))[0],
        sub: new Sub(8).byteLength,
        isView: ArrayBuffer.isView(bytes),
        resizable: new ArrayBuffer(4).resizable,
        canResize: typeof ArrayBuffer.prototype.resize,
        escape: (() => { try { new (Object.getPrototypeOf(new Uint8Array(1).buffer).constructor)(0, { maxByteLength: 8 }); return 'created'; } catch (e) { return e.name; } })(),
      };
    }`);
    expect(resultOf(ordinary)).toEqual({
      isBuffer: true,
      constructorIsGlobal: true,
      sliced: 7,
      moved: 7,
      sub: 8,
      isView: true,
      resizable: false,
      canResize: 'undefined',
      escape: 'RangeError',
    });
  });

  it('ends on the wall-clock deadline while waiting for the upstream, and cancels that request', async () => {
    let signal: AbortSignal | undefined;
    const hanging: Upstream = (_request, context) => {
      signal = context.signal;
      return new Promise(() => {});
    };
    const result = await run("async () => cloudflare.request({ method: 'GET', path: '/zones' })", {
      upstream: hanging,
      limits: { wallMs: 1_000 },
    });
    expect(errorOf(result)).toEqual({ code: 'timeout', message: 'the code did not finish within 1000 ms' });
    expect(signal?.aborted).toBe(true);
  });

  it('can be aborted by the caller', async () => {
    const controller = new AbortController();
    const hanging: Upstream = () => {
      setTimeout(() => controller.abort(), 10);
      return new Promise(() => {});
    };
    const result = await run("async () => cloudflare.request({ method: 'GET', path: '/zones' })", {
      upstream: hanging,
      signal: controller.signal,
    });
    expect(errorOf(result).code).toBe('aborted');
    expect(errorOf(await run('async () => 1', { signal: controller.signal })).code).toBe('aborted');
    expect(resultOf(await run('async () => 1'))).toBe(1);
  });

  it('keeps console output up to the log limit, then cuts it with a marker', async () => {
    const result = await run(
      "async () => { console.log('first'); console.warn({ n: 1 }); for (let i = 0; i < 50; i++) console.log('x'.repeat(30)); throw new Error('boom'); }",
      { limits: { maxLogChars: 100 } },
    );
    expect(errorOf(result).code).toBe('execution_error');
    expect(result.logs).toEqual([
      'first',
      'warn: {"n":1}',
      'x'.repeat(30),
      'x'.repeat(30),
      `${'x'.repeat(21)}…`,
      '… log output cut at 100 characters; 47 more lines left out',
    ]);
    expect(result.logs.slice(0, -1).join('').length).toBeLessThanOrEqual(100);
  });

  it('truncates a huge result and reports syntax errors precisely', async () => {
    const big = await run(
      "async () => Array.from({ length: 5000 }, (_, i) => ({ id: i, name: 'record ' + i }))",
    );
    if (!big.ok) throw new Error(big.error.message);
    expect((big.result as unknown[]).at(-1)).toMatch(/more items/);
    expect(big.truncated?.originalChars).toBeGreaterThan(JSON.stringify(big.result).length);
    expect(errorOf(await run('async () => {\n\n  return )\n}'))).toEqual({
      code: 'syntax_error',
      message: "SyntaxError: Unexpected token ')' (line 3, column 10)",
    });
  });
});
