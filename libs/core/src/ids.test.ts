import { describe, expect, it } from 'vitest';
import { hasPrefix, newId, randomString } from './ids.ts';

describe('ids', () => {
  it('are prefixed, 20 characters of [0-9a-z], and never repeat (across many refills of the byte pool)', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = newId('aud');
      expect(hasPrefix(id, 'aud')).toBe(true);
      seen.add(id);
    }
    expect(seen.size).toBe(20_000);
  });

  it('draw every character uniformly (rejection sampling over pooled bytes)', () => {
    const counts = new Map<string, number>();
    const text = randomString(360_000);
    expect(text).toMatch(/^[0-9a-z]+$/);
    for (const char of text) counts.set(char, (counts.get(char) ?? 0) + 1);
    expect(counts.size).toBe(36);
    // 10,000 expected per character; chi-square with 35 degrees of freedom stays far below 100
    // for a uniform source (p < 1e-7 beyond it), while a byte % 36 bias without the rejection
    // (252..255 folding onto 0..3) gives about 700.
    let chiSquare = 0;
    for (const count of counts.values()) chiSquare += (count - 10_000) ** 2 / 10_000;
    expect(chiSquare).toBeLessThan(100);
  });

  it('give strings of the length asked for', () => {
    for (const length of [1, 20, 64, 5_000]) expect(randomString(length)).toHaveLength(length);
  });
});
