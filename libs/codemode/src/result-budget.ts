import type { Truncation } from './sandbox.types.ts';

/**
 * Measured with o200k_base on Cloudflare API results and spec fragments: 2.3 (ids, IPs) to
 * 3.9 (prose) characters of JSON per token. 3 keeps a budget roughly right on both.
 */
export const CHARS_PER_TOKEN = 3;

export function estimateTokens(json: string): number {
  return Math.ceil(json.length / CHARS_PER_TOKEN);
}

/** Room kept at each level for the note that says what was left out. */
const NOTE_RESERVE = 48;

function size(value: unknown): number {
  return JSON.stringify(value)?.length ?? 4;
}

function cutString(text: string, budget: number): string | undefined {
  const note = (left: number): string => `…[${left} more characters]`;
  let keep = Math.min(text.length, budget - 2 - note(text.length).length);
  while (keep > 0) {
    const candidate = text.slice(0, keep) + note(text.length - keep);
    const over = size(candidate) - budget;
    if (over <= 0) return candidate;
    keep -= Math.max(1, over);
  }
  return undefined;
}

/**
 * The longest prefix of `value` (depth first) whose JSON fits `budget` characters, with a
 * note wherever something was cut. `undefined` when not even a stub fits.
 */
function shrink(value: unknown, budget: number): unknown {
  if (size(value) <= budget) return value;
  if (typeof value === 'string') return cutString(value, budget);
  if (typeof value !== 'object' || value === null) return undefined;

  if (Array.isArray(value)) {
    const out: unknown[] = [];
    let used = 2;
    for (const [i, item] of value.entries()) {
      const room = budget - used - (out.length > 0 ? 1 : 0) - NOTE_RESERVE;
      const fitted = size(item) <= room ? item : shrink(item, room);
      if (fitted === undefined) break;
      out.push(fitted);
      used += size(fitted) + (out.length > 1 ? 1 : 0);
      if (fitted !== item) {
        if (i + 1 < value.length) out.push(`…[${value.length - i - 1} more items]`);
        return out;
      }
    }
    if (out.length < value.length) out.push(`…[${value.length - out.length} more items]`);
    return out;
  }

  const entries = Object.entries(value);
  const out: Record<string, unknown> = {};
  let used = 2;
  let kept = 0;
  for (const [key, item] of entries) {
    const keyCost = JSON.stringify(key).length + 1 + (kept > 0 ? 1 : 0);
    const room = budget - used - keyCost - NOTE_RESERVE;
    const fitted = size(item) <= room ? item : shrink(item, room);
    if (fitted === undefined) break;
    out[key] = fitted;
    kept++;
    used += keyCost + size(fitted);
    if (fitted !== item) break;
  }
  if (kept < entries.length) out['…'] = `${entries.length - kept} more keys`;
  return out;
}

export interface BudgetedResult {
  readonly value: unknown;
  readonly truncated?: Truncation;
}

/** Parses a result's JSON and, when it is over budget, cuts it to a valid JSON value that fits. */
export function fitResult(json: string, budgetTokens: number): BudgetedResult {
  const value: unknown = JSON.parse(json);
  const budget = budgetTokens * CHARS_PER_TOKEN;
  if (json.length <= budget) return { value };
  const cut = shrink(value, budget) ?? `…[result of ${json.length} characters left out]`;
  return {
    value: cut,
    truncated: { originalChars: json.length, originalTokens: estimateTokens(json), keptChars: size(cut) },
  };
}
