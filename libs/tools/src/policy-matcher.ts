import { canonicalSegment } from './canonical-path.ts';

/**
 * Path patterns of policy rules: `*` or `{name}` is one segment, `**` any number of
 * segments (none included), anything else a literal segment.
 *
 * Matching runs the pattern as a non-deterministic automaton over the path's segments,
 * keeping the set of pattern positions reached: O(path segments × pattern segments) with
 * no backtracking, whatever the pattern (a rule like `/**\/**\/**\/…/zzz` once took
 * seconds per request). Validation at PUT still bounds patterns (`patternProblem`).
 */

export const MAX_PATTERN_SEGMENTS = 32;
export const MAX_PATTERN_GLOBSTARS = 4;

type Token =
  | { readonly kind: 'literal'; readonly text: string; readonly folded: string }
  | { readonly kind: 'one' }
  | { readonly kind: 'any' };

export interface CompiledPattern {
  readonly tokens: readonly Token[];
}

/**
 * How literal segments compare: `exact` for allow rules, `fold-case` (ASCII) for deny rules
 * and guards, since Cloudflare's fixed resource names are lower case and a case variant
 * must not slip past a deny.
 */
export type LiteralMatch = 'exact' | 'fold-case';

/** A path prepared once for matching against many patterns. */
export interface PathSubject {
  readonly segments: readonly string[];
  readonly folded: readonly string[];
}

export function patternSegments(pattern: string): string[] {
  return pattern.split('/').filter((s) => s !== '');
}

function isParameter(segment: string): boolean {
  return segment === '*' || (segment.length > 2 && segment.startsWith('{') && segment.endsWith('}'));
}

function compile(pattern: string): CompiledPattern {
  return {
    tokens: patternSegments(pattern).map((segment): Token => {
      if (segment === '**') return { kind: 'any' };
      if (isParameter(segment)) return { kind: 'one' };
      // Stored patterns predate validation: compare them in the same spelling as paths.
      const text = canonicalSegment(segment) ?? segment;
      return { kind: 'literal', text, folded: text.toLowerCase() };
    }),
  };
}

const CACHE_LIMIT = 2048;
const compiled = new Map<string, CompiledPattern>();

/** Compiled once per distinct pattern (bounded cache; policies are read per execution). */
export function compilePattern(pattern: string): CompiledPattern {
  let hit = compiled.get(pattern);
  if (!hit) {
    hit = compile(pattern);
    if (compiled.size >= CACHE_LIMIT) compiled.delete(compiled.keys().next().value as string);
    compiled.set(pattern, hit);
  }
  return hit;
}

export function pathSubject(segments: readonly string[]): PathSubject {
  return { segments, folded: segments.map((s) => s.toLowerCase()) };
}

export function matchPattern(pattern: CompiledPattern, path: PathSubject, literals: LiteralMatch): boolean {
  const tokens = pattern.tokens;
  const m = tokens.length;
  let current = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  // Adds state i and every state reachable from it through `**` (which may match nothing).
  const add = (set: Uint8Array, from: number): void => {
    for (let i = from; i <= m && set[i] === 0; i++) {
      set[i] = 1;
      if (tokens[i]?.kind !== 'any') return;
    }
  };
  add(current, 0);
  for (let s = 0; s < path.segments.length; s++) {
    next.fill(0);
    let alive = false;
    for (let i = 0; i < m; i++) {
      if (current[i] === 0) continue;
      const token = tokens[i] as Token;
      if (token.kind === 'any') {
        add(next, i);
        alive = true;
      } else if (
        token.kind === 'one' ||
        (literals === 'exact' ? path.segments[s] === token.text : path.folded[s] === token.folded)
      ) {
        add(next, i + 1);
        alive = true;
      }
    }
    if (!alive) return false;
    [current, next] = [next, current];
  }
  return current[m] === 1;
}

/**
 * Why a rule's path pattern is refused, or null: bounded size and `**` count, no
 * adjacent `**` (they mean one), literal segments in canonical spelling.
 */
export function patternProblem(pattern: string): string | null {
  const segments = patternSegments(pattern);
  if (segments.length > MAX_PATTERN_SEGMENTS) {
    return `has ${segments.length} segments; at most ${MAX_PATTERN_SEGMENTS} are allowed`;
  }
  const globstars = segments.filter((s) => s === '**').length;
  if (globstars > MAX_PATTERN_GLOBSTARS) {
    return `has ${globstars} "**"; at most ${MAX_PATTERN_GLOBSTARS} are allowed`;
  }
  for (let i = 1; i < segments.length; i++) {
    if (segments[i] === '**' && segments[i - 1] === '**') {
      return 'has "**/**"; one "**" already matches any number of segments';
    }
  }
  for (const segment of segments) {
    if (segment === '**' || isParameter(segment)) continue;
    const canonical = canonicalSegment(segment);
    if (canonical === null) {
      return `has the segment "${segment.slice(0, 100)}", which no accepted request path contains (encoded "/", "\\" or ";", a dot segment, control characters or invalid percent-encoding)`;
    }
    if (canonical !== segment) {
      return `has the segment "${segment.slice(0, 100)}"; write it as "${canonical}" (the spelling requests are matched in)`;
    }
  }
  return null;
}
