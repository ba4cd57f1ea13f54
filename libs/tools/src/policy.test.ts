import { describe, expect, it } from 'vitest';
import { describePolicy, evaluatePolicy, parsePolicy, pathMatches } from './policy.ts';

describe('policy', () => {
  it('matches path patterns segment by segment', () => {
    expect(pathMatches('/zones/*/dns_records', '/zones/abc/dns_records')).toBe(true);
    expect(pathMatches('/zones/{zone_id}/dns_records/**', '/zones/abc/dns_records/rec1')).toBe(true);
    expect(pathMatches('/zones/**', '/zones')).toBe(true);
    expect(pathMatches('/zones/*/dns_records', '/zones/abc/dns_records/x')).toBe(false);
    expect(pathMatches('/accounts/**/scripts/*', '/accounts/a/workers/scripts/s')).toBe(true);
  });

  it('read_only allows GET and GraphQL queries only, naming the rule', () => {
    const ro = { read_only: true };
    expect(evaluatePolicy(ro, {}, { method: 'GET', path: '/zones' })).toEqual({ allowed: true });
    expect(evaluatePolicy(ro, {}, { method: 'POST', path: '/graphql', graphqlQuery: true })).toEqual({
      allowed: true,
    });
    expect(evaluatePolicy({}, ro, { method: 'POST', path: '/graphql', graphqlQuery: false })).toMatchObject({
      allowed: false,
      rule: 'read_only',
      scope: 'identity',
    });
    expect(evaluatePolicy(ro, {}, { method: 'DELETE', path: '/zones/z' })).toMatchObject({
      allowed: false,
      scope: 'tenant',
    });
  });

  it('deny rules win over allow rules, and allow rules open writes under deny_writes_by_default', () => {
    const tenant = {
      deny_writes_by_default: true,
      rules: [
        {
          effect: 'allow' as const,
          methods: ['POST' as const, 'DELETE' as const],
          path: '/zones/*/dns_records/**',
        },
      ],
    };
    const identity = {
      rules: [
        { effect: 'deny' as const, methods: ['DELETE' as const], path: '/zones/**', name: 'no-deletes' },
      ],
    };
    expect(evaluatePolicy(tenant, identity, { method: 'POST', path: '/zones/z/dns_records' })).toEqual({
      allowed: true,
    });
    expect(
      evaluatePolicy(tenant, identity, { method: 'DELETE', path: '/zones/z/dns_records/r' }),
    ).toMatchObject({
      allowed: false,
      rule: 'no-deletes',
    });
    expect(
      evaluatePolicy(tenant, identity, { method: 'PUT', path: '/accounts/a/workers/scripts/s' }),
    ).toMatchObject({
      allowed: false,
      rule: 'deny_writes_by_default',
    });
    expect(describePolicy(tenant, identity)).toContain('writes only to: POST|DELETE /zones/*/dns_records/**');
  });

  it('approve rules hold writes no allow rule matches, never reads, and never override a deny', () => {
    const tenant = {
      rules: [
        { effect: 'approve' as const, methods: ['*' as const], path: '/**', name: 'approve-writes' },
        { effect: 'allow' as const, methods: ['*' as const], path: '/zones/staging/dns_records/**' },
      ],
    };
    const identity = {
      rules: [
        { effect: 'deny' as const, methods: ['DELETE' as const], path: '/accounts/**', name: 'no-deletes' },
      ],
    };
    expect(evaluatePolicy(tenant, identity, { method: 'POST', path: '/accounts/a/logpush/jobs' })).toEqual({
      allowed: true,
      approval: { rule: 'approve-writes', scope: 'tenant' },
    });
    expect(evaluatePolicy(tenant, identity, { method: 'GET', path: '/accounts/a/logpush/jobs' })).toEqual({
      allowed: true,
    });
    expect(
      evaluatePolicy(tenant, identity, {
        method: 'POST',
        path: '/graphql',
        graphqlQuery: true,
      }),
    ).toEqual({ allowed: true });
    expect(evaluatePolicy(tenant, identity, { method: 'PUT', path: '/zones/staging/dns_records/r' })).toEqual(
      {
        allowed: true,
      },
    );
    expect(
      evaluatePolicy(tenant, identity, { method: 'DELETE', path: '/accounts/a/workers/scripts/s' }),
    ).toMatchObject({
      allowed: false,
      rule: 'no-deletes',
    });
    // An identity's approve rule holds what the tenant policy lets through; a case variant does not escape it.
    const approving = {
      rules: [
        { effect: 'approve' as const, methods: ['POST' as const], path: '/zones/*/dns_records', name: 'dns' },
      ],
    };
    expect(evaluatePolicy({}, approving, { method: 'POST', path: '/zones/Z/DNS_RECORDS' })).toEqual({
      allowed: true,
      approval: { rule: 'dns', scope: 'identity' },
    });
    expect(describePolicy({}, approving)).toContain(
      'are sent only once approved; the result names the approval): POST /zones/*/dns_records',
    );
    expect(parsePolicy({ rules: [{ effect: 'approve', methods: ['*'], path: '/**' }] })).toMatchObject({
      rules: [{ effect: 'approve' }],
    });
  });

  it('deny rules match fixed names in any case, allow rules only exactly', () => {
    const tenant = {
      deny_writes_by_default: true,
      rules: [
        { effect: 'deny' as const, methods: ['*' as const], path: '/accounts/*/logpush/**' },
        { effect: 'allow' as const, methods: ['PUT' as const], path: '/accounts/*/workers/scripts/prod' },
      ],
    };
    expect(evaluatePolicy(tenant, {}, { method: 'GET', path: '/accounts/a/LOGPUSH/jobs' })).toMatchObject({
      allowed: false,
      rule: expect.stringContaining('logpush'),
    });
    expect(evaluatePolicy(tenant, {}, { method: 'PUT', path: '/accounts/a/workers/scripts/prod' })).toEqual({
      allowed: true,
    });
    expect(
      evaluatePolicy(tenant, {}, { method: 'PUT', path: '/accounts/a/workers/scripts/PROD' }),
    ).toMatchObject({
      allowed: false,
      rule: 'deny_writes_by_default',
    });
  });

  it('refuses credential operations unless the tenant policy allows their kind', () => {
    const mint = { method: 'POST', path: '/user/tokens' };
    expect(evaluatePolicy({}, {}, mint)).toMatchObject({
      allowed: false,
      rule: 'credential_operations',
      scope: 'tenant',
      reason: expect.stringContaining('add "api_tokens" to credential_operations.allow'),
    });
    const allowing = { credential_operations: { allow: ['api_tokens' as const] } };
    expect(evaluatePolicy(allowing, {}, mint)).toEqual({ allowed: true });
    // The other rules still apply on top.
    expect(evaluatePolicy(allowing, { read_only: true }, mint)).toMatchObject({
      allowed: false,
      rule: 'read_only',
    });
    expect(
      evaluatePolicy(allowing, {}, { method: 'POST', path: '/accounts/a/r2/temp-access-credentials' }),
    ).toMatchObject({
      allowed: false,
      rule: 'credential_operations',
    });
    expect(describePolicy(allowing, {})).toBe(
      'Policy for this identity: credential operations allowed: api_tokens (secrets withheld).',
    );
  });

  it('validates policy documents with field-named errors', () => {
    expect(parsePolicy({ read_only: true })).toEqual({ read_only: true });
    expect(() => parsePolicy({ readonly: true })).toThrow(/policy.readonly/);
    expect(() => parsePolicy({ rules: [{ effect: 'allow', methods: ['FETCH'], path: '/x' }] })).toThrow(
      /policy.rules\[0\].methods/,
    );
    expect(() => parsePolicy({ rules: [{ effect: 'allow', methods: ['GET'], path: 'zones' }] })).toThrow(
      /policy.rules\[0\].path/,
    );
    expect(
      parsePolicy({ rules: [{ effect: 'deny', methods: ['delete'], path: '/zones/**' }] }).rules?.[0]
        ?.methods,
    ).toEqual(['DELETE']);
    expect(() =>
      parsePolicy(
        { rules: [{ effect: 'deny', methods: ['*'], path: '/**/**/**/**/**/**/**/**/**/zzz' }] },
        '',
      ),
    ).toThrow(/^rules\[0\]\.path: has 9 "\*\*"; at most 4 are allowed$/);
  });

  it('lets only the tenant-wide policy allow credential operations, with known kinds', () => {
    const body = {
      credential_operations: { allow: ['api_tokens', 'api_tokens'], reveal_secrets: ['api_tokens'] },
    };
    expect(parsePolicy(body, '', 'tenant')).toEqual({
      credential_operations: { allow: ['api_tokens'], reveal_secrets: ['api_tokens'] },
    });
    expect(() => parsePolicy(body, '', 'identity')).toThrow(
      /^credential_operations: only the tenant-wide policy \(PUT \/api\/v1\/policy\) can allow/,
    );
    expect(() => parsePolicy({ credential_operations: { allow: ['tokens'] } }, '', 'tenant')).toThrow(
      /^credential_operations\.allow: "tokens" is not one of api_tokens, api_keys/,
    );
    expect(() =>
      parsePolicy({ credential_operations: { reveal_secrets: ['api_tokens'] } }, '', 'tenant'),
    ).toThrow(
      /^credential_operations\.reveal_secrets: "api_tokens" must also be in credential_operations\.allow$/,
    );
    expect(() => parsePolicy({ credential_operations: { allow: 'api_tokens' } }, '', 'tenant')).toThrow(
      /credential_operations\.allow: must be an array/,
    );
    expect(() => parsePolicy({ credential_operations: { deny: [] } }, '', 'tenant')).toThrow(
      /credential_operations\.deny: is not a field/,
    );
  });
});
