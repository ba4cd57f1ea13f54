import { describe, expect, it } from 'vitest';
import { placeExecution } from './placement.ts';
import type { Slot } from './placement.ts';

interface Named extends Slot {
  readonly name: string;
}

const rules = { spread: 2, maxExecutionsPerChild: 4 };

function slot(name: string, tenant: string | null, executions = 0, exclusive = false): Named {
  return { name, tenant, executions, exclusive };
}

function place(slots: Named[], tenant: string, solo = false): string | undefined {
  return placeExecution(slots, tenant, solo, rules)?.name;
}

describe('placeExecution', () => {
  it("never puts a call on another tenant's child, however idle", () => {
    expect(place([slot('b', 'ten_b')], 'ten_a')).toBeUndefined();
    expect(place([slot('b', 'ten_b'), slot('spare', null)], 'ten_a')).toBe('spare');
  });

  it('prefers an idle child of the tenant, then a spare while the tenant holds fewer than `spread`, then its least loaded', () => {
    expect(place([slot('spare', null), slot('a1', 'ten_a', 2), slot('a2', 'ten_a')], 'ten_a')).toBe('a2');
    expect(place([slot('a1', 'ten_a', 2), slot('spare', null)], 'ten_a')).toBe('spare');
    expect(place([slot('a1', 'ten_a', 3), slot('a2', 'ten_a', 1), slot('spare', null)], 'ten_a')).toBe('a2');
    expect(
      place([slot('a1', 'ten_a', 4), slot('a2', 'ten_a', 4), slot('spare', null)], 'ten_a'),
    ).toBeUndefined();
  });

  it('gives a retried call a child of its own, and puts nothing beside one', () => {
    expect(place([slot('a1', 'ten_a', 1), slot('spare', null)], 'ten_a', true)).toBe('spare');
    expect(place([slot('a1', 'ten_a', 1)], 'ten_a', true)).toBeUndefined();
    expect(place([slot('a1', 'ten_a', 0), slot('spare', null)], 'ten_a', true)).toBe('a1');
    expect(place([slot('solo', 'ten_a', 1, true)], 'ten_a')).toBeUndefined();
    expect(place([slot('solo', 'ten_a', 1, true), slot('spare', null)], 'ten_a')).toBe('spare');
  });

  it("counts children running a retry alone as held: retries spread no further than the tenant's other calls", () => {
    const retrying = [slot('r1', 'ten_a', 1, true), slot('r2', 'ten_a', 1, true), slot('spare', null)];
    expect(place(retrying, 'ten_a', true)).toBeUndefined();
    expect(place(retrying, 'ten_a')).toBeUndefined();
    expect(place([slot('r1', 'ten_a', 1, true), slot('spare', null)], 'ten_a', true)).toBe('spare');
    expect(place([...retrying, slot('a1', 'ten_a', 0)], 'ten_a', true)).toBe('a1');
    // Another tenant still gets the spare.
    expect(place(retrying, 'ten_b')).toBe('spare');
  });
});
