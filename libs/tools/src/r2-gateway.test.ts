import { describe, expect, it } from 'vitest';
import { evaluatePolicy, parsePolicy, pathMatches } from './policy.ts';
import { parseR2PolicyPath, r2PolicyPath } from './r2-gateway.ts';

describe('R2 object paths under policy', () => {
  it('spells keys in the canonical form rules are written in', () => {
    expect(r2PolicyPath('media')).toBe('r2://media');
    expect(r2PolicyPath('media', 'notes/hello.txt')).toBe('r2://media/notes/hello.txt');
    expect(r2PolicyPath('media', 'a b/ü(1).txt')).toBe('r2://media/a%20b/%C3%BC(1).txt');
  });

  it('spells keys, and matches the key literals of rules, in Unicode NFC as R2 identifies keys', () => {
    const nfc = 'r2://media/caf%C3%A9/menu.txt';
    expect(r2PolicyPath('media', 'caf\u00e9/menu.txt')).toBe(nfc);
    expect(r2PolicyPath('media', 'cafe\u0301/menu.txt')).toBe(nfc);
    expect(parseR2PolicyPath('r2://media/cafe%CC%81/menu.txt', 'path').path).toBe(nfc);
    // A rule stored before validation refused decomposed spellings still covers the object.
    expect(pathMatches('r2://media/cafe%CC%81/**', nfc, 'fold-case')).toBe(true);
    expect(pathMatches('r2://media/caf%C3%A9/**', nfc, 'exact')).toBe(true);
    expect(() =>
      parsePolicy({ rules: [{ effect: 'deny', methods: ['*'], path: 'r2://media/cafe%CC%81/**' }] }),
    ).toThrow(/write it as "caf%C3%A9".*NFC/);
    // API paths keep their bytes: NFC is R2's rule, not Cloudflare's API's.
    expect(
      pathMatches(
        '/accounts/a/storage/kv/namespaces/n/values/cafe%CC%81',
        '/accounts/a/storage/kv/namespaces/n/values/caf%C3%A9',
      ),
    ).toBe(false);
  });

  it('accepts r2:// rules and matches them by bucket and key, on the method policy sees', () => {
    const tenant = parsePolicy({
      rules: [
        { effect: 'deny', methods: ['DELETE'], path: 'r2://backups/**', name: 'keep-backups' },
        { effect: 'deny', methods: ['GET'], path: 'r2://media/private/**' },
      ],
    });
    const allowed = (method: string, path: string) => evaluatePolicy(tenant, {}, { method, path }).allowed;
    expect(allowed('DELETE', r2PolicyPath('backups', 'db/2026.sql'))).toBe(false);
    expect(allowed('PUT', r2PolicyPath('backups', 'db/2026.sql'))).toBe(true);
    expect(allowed('DELETE', r2PolicyPath('media', 'db/2026.sql'))).toBe(true);
    expect(allowed('GET', r2PolicyPath('media', 'private/key.pem'))).toBe(false);
    expect(allowed('GET', r2PolicyPath('media', 'public/logo.png'))).toBe(true);
    // Case variants do not slip past a deny.
    expect(allowed('DELETE', r2PolicyPath('backups', 'DB/x'))).toBe(false);
    expect(() => parsePolicy({ rules: [{ effect: 'deny', methods: ['*'], path: 's3://x/**' }] })).toThrow(
      /r2:\/\/bucket/,
    );
  });

  it('matches r2://account:<id>/ rules in that account only, and account-less rules in every account', () => {
    const a = '023e105f4ecef8ad9ca31a8372d0c353';
    const b = 'f'.repeat(32);
    const tenant = parsePolicy({
      rules: [
        { effect: 'deny', methods: ['PUT'], path: `r2://account:${b}/media/**` },
        { effect: 'deny', methods: ['DELETE'], path: 'r2://media/**' },
      ],
    });
    const allowed = (method: string, account?: string) =>
      evaluatePolicy(
        tenant,
        {},
        {
          method,
          path: r2PolicyPath('media', 'x'),
          ...(account ? { r2Account: account } : {}),
        },
      ).allowed;
    expect([allowed('PUT', a), allowed('PUT', b), allowed('PUT')]).toEqual([true, false, true]);
    expect([allowed('DELETE', a), allowed('DELETE', b)]).toEqual([false, false]);
    // An API path never matches an account rule.
    const all = parsePolicy({ rules: [{ effect: 'deny', methods: ['*'], path: `r2://account:${a}/**` }] });
    expect(evaluatePolicy(all, {}, { method: 'GET', path: '/zones', r2Account: a }).allowed).toBe(true);
    expect(parseR2PolicyPath(`r2://account:${a.toUpperCase()}/media/a b`, 'path')).toEqual({
      path: `r2://account:${a}/media/a%20b`,
      ruled: 'r2://media/a%20b',
      account: a,
      jurisdiction: null,
    });
    expect(parseR2PolicyPath(`r2://account:${a}/jurisdiction:eu/media/x`, 'path')).toEqual({
      path: `r2://account:${a}/jurisdiction:eu/media/x`,
      ruled: 'r2://media/x',
      account: a,
      jurisdiction: 'eu',
    });
    expect(() =>
      parsePolicy({ rules: [{ effect: 'deny', methods: ['*'], path: 'r2://account:*/media/**' }] }),
    ).toThrow(/32 lower-case hex characters/);
  });

  it('matches jurisdiction rules against the jurisdiction of the call only; other rules cover every jurisdiction', () => {
    const a = '023e105f4ecef8ad9ca31a8372d0c353';
    const tenant = parsePolicy({
      rules: [
        { effect: 'deny', methods: ['PUT'], path: `r2://account:${a}/jurisdiction:eu/media/**` },
        { effect: 'deny', methods: ['DELETE'], path: 'r2://jurisdiction:fedramp/**' },
        { effect: 'deny', methods: ['DELETE'], path: `r2://account:${a}/media/keep/**` },
      ],
    });
    const allowed = (method: string, key: string, jurisdiction?: string) =>
      evaluatePolicy(
        tenant,
        {},
        {
          method,
          path: r2PolicyPath('media', key),
          r2Account: a,
          ...(jurisdiction ? { r2Jurisdiction: jurisdiction } : {}),
        },
      ).allowed;
    expect([allowed('PUT', 'x', 'eu'), allowed('PUT', 'x', 'default'), allowed('PUT', 'x')]).toEqual([
      false,
      true,
      true,
    ]);
    expect([allowed('DELETE', 'x', 'fedramp'), allowed('DELETE', 'x', 'eu')]).toEqual([false, true]);
    expect([allowed('DELETE', 'keep/x', 'eu'), allowed('DELETE', 'keep/x', 'default')]).toEqual([
      false,
      false,
    ]);
  });

  it('lets read_only read objects and nothing more, and deny_writes_by_default needs an r2 allow rule', () => {
    const readOnly = { read_only: true };
    expect(evaluatePolicy(readOnly, {}, { method: 'GET', path: 'r2://media/a' }).allowed).toBe(true);
    expect(evaluatePolicy(readOnly, {}, { method: 'PUT', path: 'r2://media/a' }).allowed).toBe(false);
    expect(evaluatePolicy(readOnly, {}, { method: 'DELETE', path: 'r2://media/a' }).allowed).toBe(false);
    const guarded = parsePolicy({
      deny_writes_by_default: true,
      rules: [{ effect: 'allow', methods: ['PUT'], path: 'r2://uploads/**' }],
    });
    expect(evaluatePolicy(guarded, {}, { method: 'PUT', path: 'r2://uploads/x' }).allowed).toBe(true);
    expect(evaluatePolicy(guarded, {}, { method: 'PUT', path: 'r2://media/x' }).allowed).toBe(false);
  });
});
