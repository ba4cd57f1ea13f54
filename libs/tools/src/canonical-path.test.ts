import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { validateUpstreamRequest } from '@warden/codemode';
import { canonicalizePath } from './canonical-path.ts';
import { evaluatePolicy } from './policy.ts';
import type { Policy } from './policy.ts';

const ACCOUNT = '0123456789abcdef0123456789abcdef';

function refusalOf(path: string): WardenError | null {
  try {
    canonicalizePath(path);
    return null;
  } catch (error) {
    expect(error).toBeInstanceOf(WardenError);
    return error as WardenError;
  }
}

/** What happens to a request: refused as a bad path, refused by policy, or sent as `sent`. */
function outcome(
  tenant: Policy,
  method: string,
  path: string,
): { kind: 'invalid_path' | 'denied' } | { kind: 'sent'; sent: string } {
  let canonical: string;
  try {
    canonical = canonicalizePath(path);
  } catch (error) {
    expect((error as WardenError).code).toBe('invalid_request');
    expect((error as WardenError).details).toEqual({ field: 'path' });
    return { kind: 'invalid_path' };
  }
  return evaluatePolicy(tenant, {}, { method, path: canonical }).allowed
    ? { kind: 'sent', sent: canonical }
    : { kind: 'denied' };
}

const logpushDenied: Policy = {
  rules: [{ effect: 'deny', methods: ['*'], path: '/accounts/*/logpush/**', name: 'no-logpush' }],
};

describe('canonicalizePath', () => {
  it.each([
    // The bypasses of a deny rule on /accounts/*/logpush/**.
    [`/accounts/${ACCOUNT}/%6Cogpush/jobs`, 'denied'],
    [`/accounts/${ACCOUNT}/%6cOGPUSH/jobs`, 'denied'],
    [`/accounts/${ACCOUNT}/logpush%2Fjobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush%2fjobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush;x=1/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush%3Bx=1/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/LOGPUSH/jobs`, 'denied'],
    [`/ACCOUNTS/${ACCOUNT}/Logpush/jobs`, 'denied'],
    [`/accounts/${ACCOUNT}/logpush/jobs`, 'denied'],
    // Other spellings that could route elsewhere than the policy saw.
    [`/accounts/${ACCOUNT}/workers/..%2Flogpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/workers/%2e%2e/logpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/workers/.%2E/logpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/./logpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush%5Cjobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}//logpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush/jobs/`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/%256Cogpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/%C0%AEogpush/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush%00/jobs`, 'invalid_path'],
    [`/accounts/${ACCOUNT}/logpush%C2%85/jobs`, 'invalid_path'],
  ])('%s is %s', (path, expected) => {
    expect(outcome(logpushDenied, 'POST', path).kind).toBe(expected);
  });

  it('sends one spelling: unreserved and sub-delimiters decoded, the rest upper-case escapes, case kept', () => {
    expect(canonicalizePath('/zones/%61bc/dns_records')).toBe('/zones/abc/dns_records');
    expect(canonicalizePath('/accounts/a/ai/run/%40cf/meta/llama-3.1-8b')).toBe(
      '/accounts/a/ai/run/@cf/meta/llama-3.1-8b',
    );
    expect(canonicalizePath('/accounts/a/workers/scripts/My%2dScript')).toBe(
      '/accounts/a/workers/scripts/My-Script',
    );
    expect(canonicalizePath('/accounts/a/storage/kv/namespaces/n/values/caf%c3%a9%20menu')).toBe(
      '/accounts/a/storage/kv/namespaces/n/values/caf%C3%A9%20menu',
    );
    expect(canonicalizePath('/accounts/a/storage/kv/namespaces/n/values/a%2Bb%3F')).toBe(
      '/accounts/a/storage/kv/namespaces/n/values/a+b%3F',
    );
  });

  it('accepts an encoded "/" only in a Workers KV key name', () => {
    expect(canonicalizePath('/accounts/a/storage/kv/namespaces/n/values/dir%2ffile.txt')).toBe(
      '/accounts/a/storage/kv/namespaces/n/values/dir%2Ffile.txt',
    );
    expect(canonicalizePath('/accounts/a/storage/kv/namespaces/n/metadata/dir%2Ffile.txt')).toBe(
      '/accounts/a/storage/kv/namespaces/n/metadata/dir%2Ffile.txt',
    );
    expect(refusalOf('/accounts/a/storage/kv/namespaces/n/values/dir%2Ffile.txt/x')?.message).toMatch(
      /segment 8 contains an encoded "\/"/,
    );
    expect(refusalOf('/accounts/a/storage/kv/namespaces/n%2Fx/values/k')?.message).toMatch(/encoded "\/"/);
    expect(refusalOf('/accounts/a/STORAGE/kv/namespaces/n/values/dir%2Ffile')?.message).toMatch(
      /encoded "\/"/,
    );
  });

  it('names the field and the fix', () => {
    expect(refusalOf('/zones?x=1')?.message).toBe('path: must not contain "?"; put parameters in `query`');
    expect(refusalOf('/zones;x=1')?.message).toMatch(/^path: must not contain ";" \(matrix parameters\)/);
    expect(refusalOf('/zones/%zz')?.message).toMatch(/^path: segment 2 has an invalid percent-encoding/);
    expect(refusalOf('zones')?.message).toMatch(/starting with "\/"/);
    expect(refusalOf('/')?.message).toMatch(/empty segments/);
    expect(refusalOf('/zönes')?.message).toMatch(/percent-encoded/);
    expect(refusalOf('/zones/\r\nx')?.message).toMatch(/control characters/);
    expect(refusalOf(`/${'a'.repeat(5000)}`)?.message).toMatch(/at most 4096/);
    expect(refusalOf('/a'.repeat(65))?.message).toBe('path: has 65 segments; at most 64 are allowed');
  });

  it('property: any encoding of a denied path is refused or normalized to a denied path', () => {
    const cases: Array<{ policy: Policy; method: string; path: string }> = [
      { policy: logpushDenied, method: 'POST', path: `/accounts/${ACCOUNT}/logpush/jobs` },
      {
        policy: { rules: [{ effect: 'deny', methods: ['DELETE'], path: '/zones/*/dns_records/**' }] },
        method: 'DELETE',
        path: '/zones/abc/dns_records/r1',
      },
      // Denied by default: credential operations.
      { policy: {}, method: 'POST', path: '/user/tokens' },
      { policy: {}, method: 'PUT', path: '/user/tokens/t1/value' },
      { policy: {}, method: 'POST', path: `/accounts/${ACCOUNT}/r2/temp-access-credentials` },
    ];
    // One character of the path, spelled any way a client or attacker might; the spellings
    // that make the whole path invalid are rare, so most runs reach the policy.
    const spell = (c: string): fc.Arbitrary<string> => {
      const hex = c.charCodeAt(0).toString(16).padStart(2, '0');
      const options: fc.WeightedArbitrary<string>[] = [
        { arbitrary: fc.constant(c), weight: 40 },
        { arbitrary: fc.constant(`%${hex.toUpperCase()}`), weight: 8 },
        { arbitrary: fc.constant(`%${hex.toLowerCase()}`), weight: 8 },
        { arbitrary: fc.constant(`%25${hex}`), weight: 1 },
      ];
      if (/[a-z]/i.test(c)) {
        const flipped = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
        options.push({ arbitrary: fc.constant(flipped), weight: 12 });
      }
      if (c === '/') {
        for (const odd of ['//', '/./', '/x/../', ';x=1/'])
          options.push({ arbitrary: fc.constant(odd), weight: 1 });
      }
      return fc.oneof(...options);
    };
    const encoded = fc
      .constantFrom(...cases)
      .chain((c) =>
        fc
          .tuple(
            ...[...c.path.slice(1)].map(spell),
            fc.oneof(
              { arbitrary: fc.constant(''), weight: 20 },
              { arbitrary: fc.constantFrom('/', ';v=2', '%2F', '/.'), weight: 1 },
            ),
          )
          .map((parts) => ({ ...c, encodedPath: `/${parts.join('')}` })),
      );
    const seen = { invalid_path: 0, denied: 0 };
    fc.assert(
      fc.property(encoded, ({ policy, method, encodedPath }) => {
        const result = outcome(policy, method, encodedPath);
        expect(result.kind, encodedPath).not.toBe('sent');
        seen[result.kind as keyof typeof seen]++;
      }),
      { numRuns: 3000 },
    );
    // Both ways of refusing were exercised (about 700 and 2300 runs).
    expect(seen.denied).toBeGreaterThan(300);
    expect(seen.invalid_path).toBeGreaterThan(300);
  });

  // Segment values a caller may legitimately send (no "/", "\" or ";", no control characters).
  const segmentValue = fc.string({ unit: 'binary', minLength: 1, maxLength: 12 }).filter(
    (s) =>
      s !== '.' &&
      s !== '..' &&
      !/[/\\;%\p{Cc}]/u.test(s) &&
      (() => {
        try {
          return encodeURIComponent(s).length > 0;
        } catch {
          return false;
        }
      })(),
  );

  it('property: the canonical form keeps every segment value, is idempotent and survives the URL parser', () => {
    fc.assert(
      fc.property(fc.array(segmentValue, { minLength: 1, maxLength: 8 }), fc.boolean(), (values, lower) => {
        const encode = (s: string) => {
          const e = encodeURIComponent(s);
          return lower ? e.replace(/%[0-9A-F]{2}/g, (x) => x.toLowerCase()) : e;
        };
        const canonical = canonicalizePath(`/${values.map(encode).join('/')}`);
        expect(canonical.slice(1).split('/').map(decodeURIComponent)).toEqual(values);
        expect(canonicalizePath(canonical)).toBe(canonical);
        expect(new URL(`https://api.cloudflare.com/client/v4${canonical}`).pathname).toBe(
          `/client/v4${canonical}`,
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('property: whatever the sandbox-side validation refuses, the canonical path refuses too', () => {
    const alphabet = [
      '/',
      'a',
      'B',
      '.',
      '%',
      '2',
      'e',
      'E',
      'f',
      'F',
      '5',
      'c',
      '3',
      'b',
      ';',
      '\\',
      '?',
      '#',
    ];
    const path = fc
      .array(fc.constantFrom(...alphabet, ' ', '~', '@', '0', 'é', '\n', '%00', '%2e', '%2F', '%5c'), {
        maxLength: 20,
      })
      .map((chars) => `/${chars.join('')}`);
    fc.assert(
      fc.property(path, (p) => {
        let childRefused = false;
        try {
          validateUpstreamRequest({ method: 'GET', path: p });
        } catch {
          childRefused = true;
        }
        if (childRefused) expect(refusalOf(p), p).not.toBeNull();
      }),
      { numRuns: 3000 },
    );
  });
});
