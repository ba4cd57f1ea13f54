import { canonicalSegment } from './canonical-path.ts';
import { r2PatternLiteral } from './r2-key.ts';

/**
 * Path patterns of policy rules: `*` or `{name}` is one segment, `**` any number of
 * segments (none included), anything else a literal segment.
 *
 * Matching runs the pattern as a non-deterministic automaton over the path's segments, with
 * the set of pattern positions reached kept as a bit set (one bit per position, 32 per
 * word): each segment costs a map lookup and a few word operations, so a match takes
 * O(path segments × pattern segments / 32) with no backtracking, whatever the pattern (a
 * rule like `/**\/**\/**\/…/zzz` once took seconds per request). Validation at PUT still
 * bounds patterns (`patternProblem`).
 */

export const MAX_PATTERN_SEGMENTS = 32;
export const MAX_PATTERN_GLOBSTARS = 4;

export interface CompiledPattern {
  /** Words per state set: positions 0…tokens (the last one accepts). */
  readonly words: number;
  readonly accept: number;
  /** Positions holding `*` or `{name}`. */
  readonly one: Uint32Array;
  /** Positions holding `**`. */
  readonly any: Uint32Array;
  /** Positions of each literal, by its canonical spelling and by its lower case. */
  readonly exact: ReadonlyMap<string, Uint32Array>;
  readonly folded: ReadonlyMap<string, Uint32Array>;
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

/** The first segment of an `r2://bucket/key` path or pattern. */
const R2_SCHEME = 'r2:';

export function patternSegments(pattern: string): string[] {
  return pattern.split('/').filter((s) => s !== '');
}

function isParameter(segment: string): boolean {
  return segment === '*' || (segment.length > 2 && segment.startsWith('{') && segment.endsWith('}'));
}

function setBit(set: Uint32Array, position: number): void {
  set[position >>> 5] = ((set[position >>> 5] as number) | (1 << (position & 31))) >>> 0;
}

function compile(pattern: string): CompiledPattern {
  const segments = patternSegments(pattern);
  const words = (segments.length + 1 + 31) >>> 5;
  const one = new Uint32Array(words);
  const any = new Uint32Array(words);
  const exact = new Map<string, Uint32Array>();
  const folded = new Map<string, Uint32Array>();
  const literal = (map: Map<string, Uint32Array>, text: string, position: number) => {
    let set = map.get(text);
    if (!set) map.set(text, (set = new Uint32Array(words)));
    setBit(set, position);
  };
  const r2 = segments[0] === R2_SCHEME;
  segments.forEach((segment, position) => {
    if (segment === '**') setBit(any, position);
    else if (isParameter(segment)) setBit(one, position);
    else {
      // Stored patterns predate validation: compare them in the same spelling as paths.
      const canonical = canonicalSegment(segment) ?? segment;
      const text = r2 && position > 1 ? r2PatternLiteral(canonical) : canonical;
      literal(exact, text, position);
      literal(folded, text.toLowerCase(), position);
    }
  });
  return { words, accept: segments.length, one, any, exact, folded };
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

/** Adds to `set` every position reachable through `**`, which may match no segment. */
function closeOverGlobstars(set: Uint32Array, any: Uint32Array): void {
  for (;;) {
    let grew = false;
    let carry = 0;
    for (let w = 0; w < set.length; w++) {
      const through = (set[w] as number) & (any[w] as number);
      const reached = ((through << 1) | carry) >>> 0;
      carry = through >>> 31;
      if ((reached & ~(set[w] as number)) !== 0) {
        set[w] = ((set[w] as number) | reached) >>> 0;
        grew = true;
      }
    }
    if (!grew) return;
  }
}

export function matchPattern(pattern: CompiledPattern, path: PathSubject, literals: LiteralMatch): boolean {
  const { words, one, any } = pattern;
  let current = new Uint32Array(words);
  let next = new Uint32Array(words);
  current[0] = 1;
  closeOverGlobstars(current, any);
  for (let s = 0; s < path.segments.length; s++) {
    const literal =
      literals === 'exact'
        ? pattern.exact.get(path.segments[s] as string)
        : pattern.folded.get(path.folded[s] as string);
    let carry = 0;
    let alive = 0;
    for (let w = 0; w < words; w++) {
      const at = current[w] as number;
      // A `**` stays where it is; a segment match moves one position on.
      const advance = at & ((one[w] as number) | (literal ? (literal[w] as number) : 0));
      next[w] = ((at & (any[w] as number)) | (advance << 1) | carry) >>> 0;
      carry = advance >>> 31;
      alive |= next[w] as number;
    }
    if (alive === 0) return false;
    closeOverGlobstars(next, any);
    [current, next] = [next, current];
  }
  return ((current[pattern.accept >>> 5] as number) & (1 << (pattern.accept & 31))) !== 0;
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
  const r2 = segments[0] === R2_SCHEME;
  for (const [position, segment] of segments.entries()) {
    if (segment === '**' || isParameter(segment)) continue;
    const canonical = canonicalSegment(segment);
    if (canonical === null) {
      return `has the segment "${segment.slice(0, 100)}", which no accepted request path contains (encoded "/", "\\" or ";", a dot segment, control characters or invalid percent-encoding)`;
    }
    // R2 keys are matched in NFC, as R2 identifies them (`r2-key.ts`).
    const spelling = r2 && position > 1 ? r2PatternLiteral(canonical) : canonical;
    if (spelling !== segment) {
      return `has the segment "${segment.slice(0, 100)}"; write it as "${spelling}" (the spelling requests are matched in${spelling === canonical ? '' : ': R2 keys in Unicode NFC'})`;
    }
  }
  return null;
}
