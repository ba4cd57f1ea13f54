import { describe, expect, it } from 'vitest';
import { escapeAuditValue, unescapeAuditValue } from './audit-text.ts';

describe('escapeAuditValue', () => {
  it('keeps an own __proto__ key (parsed JSON has them) through escape and unescape, prototype untouched', () => {
    const parsed = JSON.parse(
      '{"__proto__":{"content":"hidden"},"a":"b\\u0000","list":[{"__proto__":"x"}]}',
    ) as Record<string, unknown>;
    const stored = escapeAuditValue(parsed);
    expect(Object.getOwnPropertyDescriptor(stored, '__proto__')?.value).toEqual({ content: 'hidden' });
    expect(JSON.stringify(stored)).toContain('"__proto__":{"content":"hidden"}');
    expect(Object.getPrototypeOf(stored)).toBe(Object.prototype);
    expect((stored as { content?: unknown }).content).toBeUndefined();
    const back = unescapeAuditValue(JSON.parse(JSON.stringify(stored)) as Record<string, unknown>);
    expect(JSON.stringify(back)).toBe(JSON.stringify(parsed));
    expect(JSON.stringify(back)).toContain('"__proto__":{"content":"hidden"}');
    expect(JSON.stringify(back)).toContain('"list":[{"__proto__":"x"}]');
  });
});
