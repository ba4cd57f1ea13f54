import { describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { DEFAULT_BUDGET, formatBudget, parseBudget } from './budget-spec.ts';
import { rateLimitedError } from './upstream-budget.ts';

describe('parseBudget', () => {
  it('parses requests/seconds', () => {
    expect(parseBudget('1200/300')).toEqual(DEFAULT_BUDGET);
    expect(parseBudget(' 600 / 300 ')).toEqual({ capacity: 600, windowSeconds: 300 });
    expect(formatBudget(parseBudget('5/1'))).toBe('5/1');
  });

  it.each([
    '',
    '1200',
    '1200/',
    '/300',
    '1200/300/1',
    '1.5/300',
    '-1/300',
    '0/300',
    '1200/0',
    'abc',
    '1e3/300',
    '1000001/300',
  ])('refuses %j with an error naming the setting and the value', (value) => {
    const error = (() => {
      try {
        return parseBudget(value);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(WardenError);
    expect((error as WardenError).code).toBe('invalid_request');
    expect((error as WardenError).message).toContain('CLOUDFLARE_BUDGET');
    expect((error as WardenError).message).toContain(JSON.stringify(value));
    expect((error as WardenError).details.field).toBe('CLOUDFLARE_BUDGET');
  });

  it('names the given field for per-tenant settings', () => {
    expect(() => parseBudget('lots', 'settings.cloudflare_budget')).toThrow(/^settings\.cloudflare_budget: /);
  });

  it('truncates absurdly long values in the message', () => {
    const error = (() => {
      try {
        return parseBudget('9'.repeat(500));
      } catch (e) {
        return e as WardenError;
      }
    })();
    expect((error as WardenError).message.length).toBeLessThan(200);
  });
});

describe('helpers', () => {
  it('turns a refusal into a rate_limited error naming the budget, with whole seconds to wait', () => {
    const refusal = {
      allowed: false,
      budget: 'graphql',
      reason: 'window',
      retryAfterMs: 1250,
      message: 'the GraphQL budget is used up; retry in 2 s',
    } as const;
    const error = rateLimitedError(refusal);
    expect(error.code).toBe('rate_limited');
    expect(error.message).toBe(refusal.message);
    expect(error.details).toMatchObject({ retryAfterSeconds: 2, budget: 'graphql', reason: 'window' });
    expect(rateLimitedError({ ...refusal, retryAfterMs: 1, reason: 'blocked' }).details).toMatchObject({
      retryAfterSeconds: 1,
      reason: 'blocked',
    });
  });
});
