import { describe, expect, it } from 'vitest';
import {
  describePolicy,
  evaluatePolicy,
  isGraphqlQueryDocument,
  parsePolicy,
  pathMatches,
} from './policy.ts';

describe('policy', () => {
  it('matches path patterns segment by segment', () => {
    expect(pathMatches('/zones/*/dns_records', '/zones/abc/dns_records')).toBe(true);
    expect(pathMatches('/zones/{zone_id}/dns_records/**', '/zones/abc/dns_records/rec1')).toBe(true);
    expect(pathMatches('/zones/**', '/zones')).toBe(true);
    expect(pathMatches('/zones/*/dns_records', '/zones/abc/dns_records/x')).toBe(false);
    expect(pathMatches('/accounts/**/scripts/*', '/accounts/a/workers/scripts/s')).toBe(true);
    expect(pathMatches('/zones/*', '/zones/abc?x=1')).toBe(true);
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

  it('recognises GraphQL mutations', () => {
    expect(isGraphqlQueryDocument({ query: '{ viewer { zones { zoneTag } } }' })).toBe(true);
    expect(isGraphqlQueryDocument({ query: 'query Q { viewer { a } }' })).toBe(true);
    expect(isGraphqlQueryDocument({ query: 'mutation { x }' })).toBe(false);
    expect(isGraphqlQueryDocument({ query: '# comment\n mutation M { x }' })).toBe(false);
    expect(isGraphqlQueryDocument({ query: '{ a(filter: "mutation") }' })).toBe(true);
    expect(isGraphqlQueryDocument({})).toBe(false);
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
  });
});
