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

/**
 * Containers nested deeper than this are cut (`…[nested deeper than 64 levels]`), however small:
 * what a result holds must be walkable without recursion limits by everything that handles it
 * after the isolate (the cut here, the child's IPC serializer, the service's JSON), and a
 * Cloudflare answer is nowhere near as deep.
 */
export const MAX_RESULT_DEPTH = 64;

const DEPTH_NOTE = `…[nested deeper than ${MAX_RESULT_DEPTH} levels]`;

/** JSON length of a value that is small and shallow (what was kept). */
function size(value: unknown): number {
  return JSON.stringify(value)?.length ?? 4;
}

/** JSON length of a string, exactly when it is at most `limit`, else some number above it. */
function stringCost(text: string, limit: number): number {
  return text.length + 2 > limit ? text.length + 2 : JSON.stringify(text).length;
}

/**
 * The JSON length of a parsed JSON value when it is at most `limit` and nested at most `depth`
 * containers deep; Infinity otherwise. Iterative, and it stops as soon as either is exceeded, so
 * asking it of a large or deep value costs about `limit`, not the value's size: cutting a result
 * asks it once per level.
 */
function fits(value: unknown, limit: number, depth: number): number {
  let total = 0;
  const stack: Array<readonly [unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v === 'string') total += stringCost(v, limit - total);
    else if (typeof v === 'number') total += Number.isFinite(v) ? String(v).length : 4;
    else if (typeof v === 'boolean') total += v ? 4 : 5;
    else if (v === null || typeof v !== 'object') total += 4;
    else {
      if (d >= depth) return Infinity;
      if (Array.isArray(v)) {
        total += 2 + Math.max(0, v.length - 1);
        if (total > limit) return Infinity;
        for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], d + 1]);
      } else {
        const keys = Object.keys(v);
        total += 2 + Math.max(0, keys.length - 1);
        for (const key of keys) {
          if (total > limit) return Infinity;
          total += stringCost(key, limit - total) + 1;
          stack.push([(v as Record<string, unknown>)[key], d + 1]);
        }
      }
    }
    if (total > limit) return Infinity;
  }
  return total;
}

function cutString(text: string, budget: number): string | undefined {
  const note = (left: number): string => `…[${left} more characters]`;
  let keep = Math.min(text.length, budget - 2 - note(text.length).length);
  while (keep > 0) {
    const candidate = text.slice(0, keep) + note(text.length - keep);
    const cost = size(candidate);
    if (cost <= budget) return candidate;
    // Characters JSON escapes cost up to six: shrink in proportion, not one over-budget step at a time.
    keep = Math.min(keep - 1, Math.floor((keep * budget) / cost));
  }
  return undefined;
}

/**
 * The longest prefix of `value` (depth first) whose JSON fits `budget` characters, with a
 * note wherever something was cut, and containers below `MAX_RESULT_DEPTH` (`depth` is this
 * value's) replaced by a note. `undefined` when not even a stub fits.
 */
function shrink(value: unknown, budget: number, depth = 0): unknown {
  if (fits(value, budget, MAX_RESULT_DEPTH - depth) <= budget) return value;
  if (typeof value === 'string') return cutString(value, budget);
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_RESULT_DEPTH) return DEPTH_NOTE.length + 2 <= budget ? DEPTH_NOTE : undefined;

  if (Array.isArray(value)) {
    const out: unknown[] = [];
    let used = 2;
    for (const [i, item] of value.entries()) {
      const room = budget - used - (out.length > 0 ? 1 : 0) - NOTE_RESERVE;
      const fitted = shrink(item, room, depth + 1);
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
    const fitted = shrink(item, room, depth + 1);
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

/**
 * Parses a result's JSON and, when it is over budget (or nested deeper than `MAX_RESULT_DEPTH`),
 * cuts it to a valid JSON value that fits.
 */
export function fitResult(json: string, budgetTokens: number): BudgetedResult {
  const value: unknown = JSON.parse(json);
  const budget = budgetTokens * CHARS_PER_TOKEN;
  if (json.length <= budget && fits(value, budget, MAX_RESULT_DEPTH) <= budget) return { value };
  const cut = shrink(value, budget) ?? `…[result of ${json.length} characters left out]`;
  return {
    value: cut,
    truncated: { originalChars: json.length, originalTokens: estimateTokens(json), keptChars: size(cut) },
  };
}
