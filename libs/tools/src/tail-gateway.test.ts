import { describe, expect, it } from 'vitest';
import { parsePolicy } from './policy.ts';
import { tailDecision, tailFilters } from './tail-gateway.ts';

const PATH = '/accounts/abc123/workers/scripts/api/tails';

describe('a Worker tail under policy', () => {
  const decide = (tenant: unknown, identity: unknown = {}) =>
    tailDecision(parsePolicy(tenant), parsePolicy(identity), PATH);

  it('is a read: read_only and deny_writes_by_default let it through, approve rules do not hold it', () => {
    expect(decide({}, { read_only: true })).toEqual({ allowed: true });
    expect(decide({ deny_writes_by_default: true })).toEqual({ allowed: true });
    expect(decide({ rules: [{ effect: 'approve', methods: ['*'], path: '/**' }] })).toEqual({
      allowed: true,
    });
  });

  it('is refused by a deny rule on POST or GET of the tails path, or a pattern covering it, whatever the case', () => {
    for (const rule of [
      { effect: 'deny', methods: ['POST'], path: '/accounts/*/workers/scripts/*/tails' },
      { effect: 'deny', methods: ['GET'], path: '/accounts/*/workers/**' },
      { effect: 'deny', methods: ['*'], path: '/ACCOUNTS/*/workers/scripts/api/**' },
    ]) {
      expect(decide({}, { read_only: true, rules: [rule] }), JSON.stringify(rule)).toMatchObject({
        allowed: false,
        scope: 'identity',
      });
      expect(decide({ rules: [rule] }), JSON.stringify(rule)).toMatchObject({
        allowed: false,
        scope: 'tenant',
      });
    }
    // Another Worker's tails, or another method, stay allowed.
    expect(
      decide({
        rules: [{ effect: 'deny', methods: ['POST'], path: '/accounts/*/workers/scripts/billing/tails' }],
      }),
    ).toEqual({ allowed: true });
    expect(
      decide({
        rules: [{ effect: 'deny', methods: ['DELETE'], path: '/accounts/*/workers/scripts/*/tails' }],
      }),
    ).toEqual({ allowed: true });
  });
});

describe('tail filters', () => {
  it("are sent as wrangler's filter list, status broadened to outcomes", () => {
    expect(tailFilters({})).toEqual({ filters: [] });
    expect(
      tailFilters({
        status: ['error', 'ok'],
        outcome: ['canceled'],
        method: ['POST'],
        sampleRate: 0.1,
        query: 'boom',
      }),
    ).toEqual({
      filters: [
        { sampling_rate: 0.1 },
        { outcome: ['canceled', 'exception', 'exceededCpu', 'exceededMemory', 'unknown', 'ok'] },
        { method: ['POST'] },
        { query: 'boom' },
      ],
    });
  });
});
