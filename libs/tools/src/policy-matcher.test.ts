import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compilePattern, matchPattern, pathSubject, patternProblem } from './policy-matcher.ts';
import type { LiteralMatch } from './policy-matcher.ts';

/** The former backtracking matcher (exponential on repeated `**`), as the reference on small inputs. */
function reference(
  pattern: readonly string[],
  path: readonly string[],
  literals: LiteralMatch,
  pi = 0,
  si = 0,
): boolean {
  if (pi === pattern.length) return si === path.length;
  const p = pattern[pi] as string;
  if (p === '**') {
    for (let k = si; k <= path.length; k++) if (reference(pattern, path, literals, pi + 1, k)) return true;
    return false;
  }
  if (si === path.length) return false;
  const s = path[si] as string;
  const literalMatches = literals === 'exact' ? p === s : p.toLowerCase() === s.toLowerCase();
  if (p === '*' || (p.startsWith('{') && p.endsWith('}')) || literalMatches) {
    return reference(pattern, path, literals, pi + 1, si + 1);
  }
  return false;
}

function matches(pattern: string, path: string, literals: LiteralMatch = 'exact'): boolean {
  return matchPattern(compilePattern(pattern), pathSubject(path.split('/').filter(Boolean)), literals);
}

describe('policy matcher', () => {
  it('matches segment patterns', () => {
    expect(matches('/zones/*/dns_records', '/zones/abc/dns_records')).toBe(true);
    expect(matches('/zones/{zone_id}/dns_records/**', '/zones/abc/dns_records/rec1')).toBe(true);
    expect(matches('/zones/**', '/zones')).toBe(true);
    expect(matches('/**', '/')).toBe(true);
    expect(matches('/zones/*/dns_records', '/zones/abc/dns_records/x')).toBe(false);
    expect(matches('/accounts/**/scripts/*', '/accounts/a/workers/scripts/s')).toBe(true);
    expect(matches('/accounts/*/logpush/**', '/accounts/a/LOGPUSH/jobs')).toBe(false);
    expect(matches('/accounts/*/logpush/**', '/accounts/a/LOGPUSH/jobs', 'fold-case')).toBe(true);
    // Literals of stored patterns are compared in canonical spelling.
    expect(matches('/accounts/*/%6Cogpush/**', '/accounts/a/logpush/jobs')).toBe(true);
  });

  it('property: agrees with the backtracking reference', () => {
    const patternSegment = fc.constantFrom('a', 'b', 'A', '*', '**', '{x}');
    const pathSegment = fc.constantFrom('a', 'b', 'A', 'B');
    fc.assert(
      fc.property(
        fc.array(patternSegment, { maxLength: 7 }),
        fc.array(pathSegment, { maxLength: 9 }),
        fc.constantFrom<LiteralMatch>('exact', 'fold-case'),
        (pattern, path, literals) => {
          expect(
            matchPattern(compilePattern(`/${pattern.join('/')}`), pathSubject(path), literals),
            `${pattern.join('/')} ~ ${path.join('/')}`,
          ).toBe(reference(pattern, path, literals));
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('property: agrees with the reference on long patterns (several words of state)', () => {
    const token = fc.oneof(
      { arbitrary: fc.constantFrom('a', 'b', 'A', '*'), weight: 30 },
      { arbitrary: fc.constant('**'), weight: 1 },
    );
    const pattern = fc
      .array(token, { minLength: 30, maxLength: 70 })
      .filter((tokens) => tokens.filter((t) => t === '**').length <= 3);
    // Half the paths are instances of the pattern (then perhaps altered), so both answers occur.
    const instance = (tokens: readonly string[]) =>
      fc
        .tuple(
          ...tokens.map((t) =>
            t === '**'
              ? fc.array(fc.constantFrom('a', 'b'), { maxLength: 3 })
              : t === '*'
                ? fc.constantFrom('a', 'b').map((x) => [x])
                : fc.constantFrom([t], [t.toLowerCase()], [t.toUpperCase()]),
          ),
          fc.option(fc.nat(80)),
        )
        .map(([...parts]) => {
          const altered = parts.pop() as number | null;
          const path = (parts as string[][]).flat();
          if (altered !== null && path.length > 0) path[altered % path.length] = 'z';
          return path;
        });
    const seen = { true: 0, false: 0 };
    fc.assert(
      fc.property(
        pattern.chain((tokens) =>
          fc.tuple(
            fc.constant(tokens),
            fc.oneof(instance(tokens), fc.array(fc.constantFrom('a', 'b'), { maxLength: 80 })),
          ),
        ),
        fc.constantFrom<LiteralMatch>('exact', 'fold-case'),
        ([tokens, path], literals) => {
          const expected = reference(tokens, path, literals);
          seen[`${expected}`]++;
          expect(matchPattern(compilePattern(`/${tokens.join('/')}`), pathSubject(path), literals)).toBe(
            expected,
          );
        },
      ),
      { numRuns: 1500 },
    );
    expect(seen.true).toBeGreaterThan(100);
    expect(seen.false).toBeGreaterThan(100);
  });

  it("answers the issue's pathological rule on a 40-segment path", () => {
    const pattern = '/**/**/**/**/**/**/**/**/**/zzz';
    const path = `/${Array.from({ length: 40 }, (_, i) => `s${i}`).join('/')}`;
    // The former matcher took 19.7 s here (issue 21); the automaton takes 40 × 10 steps.
    expect(matches(pattern, path)).toBe(false);
    expect(matches(pattern, `${path}/zzz`)).toBe(true);
  });

  it('bounds patterns with messages that say what to change', () => {
    expect(patternProblem('/zones/*/dns_records/**')).toBeNull();
    expect(patternProblem('/**/**/**/**/**/**/**/**/**/zzz')).toMatch(/has 9 "\*\*"; at most 4/);
    expect(patternProblem('/zones/**/**/x')).toMatch(/"\*\*\/\*\*"/);
    expect(patternProblem(`/${Array.from({ length: 33 }, () => 'a').join('/')}`)).toMatch(
      /33 segments; at most 32/,
    );
    expect(patternProblem('/accounts/*/%6Cogpush/**')).toMatch(/write it as "logpush"/);
    expect(patternProblem('/accounts/*/logpush%2Fjobs')).toMatch(/no accepted request path contains/);
    expect(patternProblem('/accounts/*/Workers')).toBeNull();
  });
});
