import { describe, expect, it } from 'vitest';
import { steerNiceness } from './cpu-fairness.ts';

/** Each tenant as [name, cores its children used, their niceness, its calls wait for a child]. */
type Row = readonly [tenant: string, usedCores: number, nice: number, waiting?: boolean];

/** What steerNiceness changes, from base 10 up to 19. */
function steer(...rows: Row[]): Map<string, number> {
  return steerNiceness(
    rows.map(([tenant, usedCores, nice, waiting]) => ({ tenant, usedCores, nice, waiting })),
    { baseNice: 10, maxNice: 19 },
  );
}

describe('steerNiceness', () => {
  it('steers down a tenant that takes clearly more than an equal share while another also wants CPU', () => {
    // Four threads of A's against one of B's on two cores.
    expect(steer(['ten_a', 1.6, 10], ['ten_b', 0.4, 10])).toEqual(new Map([['ten_a', 12]]));
    expect(steer(['ten_a', 1.3, 12], ['ten_b', 0.7, 10])).toEqual(new Map([['ten_a', 13]]));
  });

  it('leaves tenants near an equal share as they are, and brings back one that now takes less', () => {
    expect(steer(['ten_a', 1.05, 14], ['ten_b', 0.95, 10])).toEqual(new Map());
    expect(steer(['ten_a', 0.5, 14], ['ten_b', 1.5, 10])).toEqual(
      new Map([
        ['ten_a', 13],
        ['ten_b', 12],
      ]),
    );
  });

  it('never goes below the base or above the lowest priority', () => {
    expect(steer(['ten_a', 1.9, 19], ['ten_b', 0.1, 10], ['ten_c', 0.12, 10])).toEqual(new Map());
    expect(steer(['ten_a', 1.9, 18], ['ten_b', 0.1, 10])).toEqual(new Map([['ten_a', 19]]));
  });

  it('brings a tenant back a step at a time once no other tenant wants CPU: alone it costs nothing', () => {
    expect(steer(['ten_a', 2, 16], ['ten_b', 0.02, 10])).toEqual(new Map([['ten_a', 15]]));
    expect(steer(['ten_a', 2, 10])).toEqual(new Map());
    expect(steer()).toEqual(new Map());
  });

  it('counts a tenant whose calls wait for a child as wanting CPU, whatever it used', () => {
    expect(steer(['ten_a', 1.9, 10], ['ten_b', 0, 10, true])).toEqual(new Map([['ten_a', 12]]));
  });
});
