import ivm from 'isolated-vm';
import { describe, expect, it } from 'vitest';
import { ExecuteSandbox } from './execute.sandbox.ts';
import type { RequestUpstream } from './execute.sandbox.ts';
import { ISOLATE_RUNTIME_SCRIPT, SDK_ISOLATE_RUNTIME_SCRIPT } from './isolate-runtime.ts';
import type { UpstreamOutcome } from './sandbox.protocol.ts';
import { DEFAULT_LIMITS } from './sandbox.types.ts';
import { ok, resultOf } from './test-support/fixtures.ts';

/**
 * Outsider attack on the warm-up code cache: execute isolates load the runtime from a V8 code cache
 * made after a warm-up call of Warden's own in an isolate of its own. Claims attacked: agent code
 * can never influence the cache or the state of isolates built from it; every execution starts
 * from a clean isolate; a cache V8 refuses is replaced. Tests marked HELD pass.
 */

/** Bytes of the cache V8 makes right after compiling `source` (the top level only). */
function plainCacheBytes(source: string): number {
  const isolate = new ivm.Isolate({ memoryLimit: 32 });
  try {
    const script = isolate.compileScriptSync(source, {
      filename: 'warden-runtime.js',
      produceCachedData: true,
    }) as ivm.Script & ivm.CachedDataResult;
    return script.cachedData?.copy().byteLength ?? 0;
  } finally {
    isolate.dispose();
  }
}

/** An upstream that records every payload and answers a GET with `answer`, refuses the rest. */
function recorder(answer: unknown) {
  const seen: unknown[] = [];
  const upstream: RequestUpstream = async (payload) => {
    seen.push(payload);
    const method = (payload as { method?: string }).method;
    return method === 'GET'
      ? ({ ok: true, response: ok(answer) } as UpstreamOutcome)
      : { ok: false, code: 'policy_denied', message: 'refused by the test' };
  };
  return { seen, upstream };
}

const HOSTILE = `async () => {
  // Everything agent code can reach in its isolate, changed.
  Object.prototype.polluted = 'yes';
  Array.prototype.push = function () { return 'evil push'; };
  JSON.stringify = () => '"evil stringify"';
  JSON.parse = () => 'evil parse';
  WeakMap.prototype.get = function () { return { code: 'policy_denied', message: 'forged' }; };
  Error.prototype.code = 'policy_denied';
  Object.defineProperty = () => { throw new Error('evil defineProperty'); };
  Reflect.apply = () => 'evil apply';
  globalThis.leftBehind = accountId;
  String.prototype.slice = () => 'evil slice';
  RegExp.prototype.exec = () => null;
  // The runtime's own objects: frozen, or not configurable.
  const tries = [];
  for (const f of [() => { cloudflare.request = () => 'x'; }, () => { globalThis.cloudflare = {}; },
    () => { r2.list = () => 'x'; }, () => { console.log = () => 'x'; }, () => { globalThis.accountId = 'other'; }]) {
    try { f(); tries[tries.length] = 'changed'; } catch { tries[tries.length] = 'refused'; }
  }
  // A runtime refusal kept, and work left running after the code returns.
  try { await cloudflare.request({ method: 'POST', path: '/zones' }); } catch (e) { globalThis.kept = e; }
  (async () => { for (let i = 0; i < 50; i++) { await cloudflare.request({ method: 'GET', path: '/late/' + i }).catch(() => {}); } })();
  return tries;
}`;

const PROBE = `async () => {
  const out = {};
  out.polluted = ({}).polluted === undefined;
  const a = []; a.push(1); out.push = a.length === 1;
  out.stringify = JSON.stringify({ a: 1 }) === '{"a":1}';
  out.errorCode = new Error('x').code === undefined;
  out.leftBehind = typeof leftBehind === 'undefined' && typeof kept === 'undefined';
  out.accountId = accountId === undefined;
  out.slice = 'abc'.slice(1) === 'bc';
  out.consoleWorks = (console.log('probe line'), true);
  const answer = await cloudflare.request({ method: 'GET', path: '/zones' });
  out.answer = answer.result;
  try { await cloudflare.request({ method: 'DELETE', path: '/zones/z1' }); } catch (e) { out.refusal = e.code; }
  await r2.list({ bucket: 'b' }).catch(() => {});
  // A forged error carries no runtime code.
  const forged = new Error('mine'); forged.code = 'policy_denied';
  out.forged = forged;
  throw forged;
}`;

describe('outsider attack: the runtime code cache made by a warm-up call', () => {
  it('HELD: hostile code in one execution changes nothing the next execution of the same sandbox sees, and the cache stays the warm one', async () => {
    const sandbox = new ExecuteSandbox(() => undefined);
    try {
      const first = recorder(['z-first']);
      const hostile = await sandbox.execute(1, HOSTILE, 'acc-A', DEFAULT_LIMITS, first.upstream);
      expect(resultOf(hostile)).toEqual(['refused', 'refused', 'refused', 'refused', 'refused']);
      const warmBytes = sandbox.runtimeCacheBytes;
      expect(warmBytes).toBeGreaterThan(plainCacheBytes(SDK_ISOLATE_RUNTIME_SCRIPT));

      const second = recorder(['z-second']);
      const probe = await sandbox.execute(2, PROBE, null, DEFAULT_LIMITS, second.upstream);
      // The forged code is not believed: the thrown error is the code's own.
      expect(probe.ok).toBe(false);
      expect(probe).toMatchObject({ error: { code: 'execution_error' } });
      expect(JSON.stringify(probe)).toContain('Error: mine');
      expect(probe.logs).toEqual(['probe line']);
      // What the second call sent: its own requests only, with no account left over from the first.
      expect(second.seen).toEqual([
        { method: 'GET', path: '/zones' },
        { method: 'DELETE', path: '/zones/z1' },
        { r2: 'list', bucket: 'b', accountId: null },
      ]);
      // The first call's leftover requests never reached its upstream after it ended.
      expect(
        first.seen.filter((p) => String((p as { path?: string }).path).startsWith('/late/')).length,
      ).toBeLessThanOrEqual(1);

      // The checks themselves, returned this time.
      const checks = await sandbox.execute(
        3,
        PROBE.replace('throw forged;', 'delete out.forged; return out;'),
        null,
        DEFAULT_LIMITS,
        recorder(['z-third']).upstream,
      );
      expect(resultOf(checks)).toEqual({
        polluted: true,
        push: true,
        stringify: true,
        errorCode: true,
        leftBehind: true,
        accountId: true,
        slice: true,
        consoleWorks: true,
        answer: ['z-third'],
        refusal: 'policy_denied',
      });
      expect(sandbox.runtimeCacheBytes).toBe(warmBytes);
    } finally {
      sandbox.close();
    }
  });

  it('HELD: the warm cache is accepted by isolates of other memory limits (V8 does not refuse it and it is not replaced by a plain one)', async () => {
    const sandbox = new ExecuteSandbox(() => undefined, null);
    try {
      const plain = plainCacheBytes(ISOLATE_RUNTIME_SCRIPT);
      for (const memoryMb of [16, 64, 128, 256]) {
        const { upstream } = recorder([memoryMb]);
        const result = await sandbox.execute(
          memoryMb,
          `async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result`,
          null,
          { ...DEFAULT_LIMITS, memoryMb },
          upstream,
        );
        expect(resultOf(result)).toEqual([memoryMb]);
        // Without the SDK table too, the cache is the warm one (larger than the top level alone).
        expect(sandbox.runtimeCacheBytes).toBeGreaterThan(plain);
      }
    } finally {
      sandbox.close();
    }
  });

  it('HELD: executions started while the warm-up runs wait for it; the warm-up stub never answers them, and their requests never reach it', async () => {
    const sandbox = new ExecuteSandbox(() => undefined);
    try {
      const calls = [1, 2, 3, 4].map((id) => {
        const { seen, upstream } = recorder([`z-${id}`]);
        const code = `async () => {
          globalThis.mark = ${id};
          const seenBefore = Object.keys(globalThis).filter((k) => k === 'mark' || k.startsWith('warm')).length;
          const zones = (await cloudflare.request({ method: 'GET', path: '/zones', query: { per_page: 1 } })).result;
          let refused = null;
          try { await cloudflare.request({ method: 'POST', path: '/zones', body: { name: 'warm-up.example' } }); } catch (e) { refused = e.code; }
          return { mark: globalThis.mark, seenBefore, zones, refused, account: accountId };
        }`;
        return sandbox
          .execute(id, code, `acc-${id}`, DEFAULT_LIMITS, upstream)
          .then((result) => ({ id, result, seen }));
      });
      for (const { id, result, seen } of await Promise.all(calls)) {
        expect(resultOf(result)).toEqual({
          mark: id,
          seenBefore: 1,
          zones: [`z-${id}`],
          refused: 'policy_denied',
          account: `acc-${id}`,
        });
        expect(seen).toHaveLength(2);
        expect(result.logs).toEqual([]);
      }
      expect(sandbox.runtimeCacheBytes).toBeGreaterThan(plainCacheBytes(SDK_ISOLATE_RUNTIME_SCRIPT));
    } finally {
      sandbox.close();
    }
  });
});
