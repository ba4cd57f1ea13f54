import { describe, expect, it } from 'vitest';
import { CHARS_PER_TOKEN, MAX_RESULT_DEPTH, fitResult } from './result-budget.ts';

const budget = 200;
const maxChars = budget * CHARS_PER_TOKEN;

function fitted(value: unknown): ReturnType<typeof fitResult> {
  const out = fitResult(JSON.stringify(value), budget);
  expect(JSON.stringify(out.value).length).toBeLessThanOrEqual(maxChars);
  return out;
}

describe('fitResult', () => {
  it('returns results within the budget untouched', () => {
    const value = { zones: [{ id: 'a', name: 'example.com' }] };
    expect(fitResult(JSON.stringify(value), budget)).toEqual({ value });
  });

  it('keeps the first items of a long array and says how many were left out', () => {
    const items = Array.from({ length: 500 }, (_, i) => ({ id: i, name: `zone-${i}.example.com` }));
    const out = fitted(items);
    const kept = out.value as unknown[];
    expect(kept[0]).toEqual(items[0]);
    expect(kept.at(-1)).toMatch(/^…\[\d+ more items\]$/);
    expect(out.truncated).toEqual({
      originalChars: JSON.stringify(items).length,
      originalTokens: Math.ceil(JSON.stringify(items).length / CHARS_PER_TOKEN),
      keptChars: JSON.stringify(out.value).length,
    });
  });

  it('cuts long strings, deep objects and escapes without ever producing invalid JSON', () => {
    const text = fitted('"quoted"\n'.repeat(1_000)).value as string;
    expect(text).toMatch(/^"quoted"\n/);
    expect(text).toMatch(/…\[\d+ more characters\]$/);

    const nested = {
      a: { b: { c: Array.from({ length: 100 }, (_, i) => ({ ['k' + i]: 'v'.repeat(50) })) } },
      tail: 1,
    };
    const out = fitted(nested).value as { a: { b: { c: unknown[] } }; '…'?: string };
    expect(out.a.b.c.length).toBeGreaterThan(1);
    expect(out['…']).toBe('1 more keys');

    const wide = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`key${i}`, i]));
    const kept = fitted(wide).value as Record<string, unknown>;
    expect(kept.key0).toBe(0);
    expect(kept['…']).toMatch(/more keys/);
  });

  it('cuts what is nested deeper than MAX_RESULT_DEPTH, however small, and never recurses with the depth (outsider attack)', () => {
    const depthOf = (v: unknown): number =>
      Array.isArray(v)
        ? 1 + Math.max(0, ...v.map(depthOf))
        : typeof v === 'object' && v !== null
          ? 1 + Math.max(0, ...Object.values(v).map(depthOf))
          : 0;
    // 10,000 levels of {k: …}: the cut used to recurse once per level and crash the sandbox process.
    // (Built as text: this process's JSON.stringify cannot nest that deep, the isolate's could.)
    const deep = '{"k":'.repeat(10_000) + '{}' + '}'.repeat(10_000);
    const out = fitResult(deep, budget);
    expect(JSON.stringify(out.value).length).toBeLessThanOrEqual(maxChars);
    expect(depthOf(out.value)).toBeLessThanOrEqual(MAX_RESULT_DEPTH);
    expect(JSON.stringify(out.value)).toMatch(/^\{"k":\{"k":.*more keys/);
    expect(out.truncated?.originalChars).toBe(deep.length);
    // Small but deep (within the service's budget of 6,000 tokens): cut too, and said so.
    let small: unknown = 1;
    for (let i = 0; i < 100; i++) small = [small];
    const cut = fitResult(JSON.stringify(small), 6_000);
    expect(depthOf(cut.value)).toBe(MAX_RESULT_DEPTH);
    expect(JSON.stringify(cut.value)).toContain(`"…[nested deeper than ${MAX_RESULT_DEPTH} levels]"`);
    expect(cut.truncated).toBeDefined();
    // At the limit it is untouched.
    let atLimit: unknown = 1;
    for (let i = 0; i < MAX_RESULT_DEPTH; i++) atLimit = [atLimit];
    expect(fitResult(JSON.stringify(atLimit), budget)).toEqual({ value: atLimit });
  });

  it('cuts in time linear in the budget, not in the result, however the result nests (outsider attack)', () => {
    // 1,000 levels around a 4 MB string: each level used to serialize the whole rest again.
    let value: unknown = 'x'.repeat(4_000_000);
    for (let i = 0; i < 1_000; i++) value = [value];
    const started = performance.now();
    fitted(value);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('keeps a prefix of a string whose characters JSON escapes (lone surrogates cost six each)', () => {
    const text = fitted('\ud800'.repeat(30_000)).value as string;
    expect(text).toMatch(/^\ud800+…\[\d+ more characters\]$/);
  });

  it('replaces a value that cannot shrink by a note', () => {
    expect(fitResult('12345678', 1).value).toBe('…[result of 8 characters left out]');
  });
});
