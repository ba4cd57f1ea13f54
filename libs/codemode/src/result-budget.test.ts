import { describe, expect, it } from 'vitest';
import { CHARS_PER_TOKEN, fitResult } from './result-budget.ts';

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

  it('replaces a value that cannot shrink by a note', () => {
    expect(fitResult('12345678', 1).value).toBe('…[result of 8 characters left out]');
  });
});
