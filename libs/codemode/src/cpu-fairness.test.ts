import { describe, expect, it } from 'vitest';
import { steerNiceness } from './cpu-fairness.ts';

const rules = { baseNice: 10, maxNice: 19 };

describe('steerNiceness', () => {
  it('steers down a tenant that takes clearly more than an equal share while another also wants CPU', () => {
    // Four threads of A's against one of B's on two cores.
    const next = steerNiceness(
      [
        { tenant: 'ten_a', usedCores: 1.6, nice: 10 },
        { tenant: 'ten_b', usedCores: 0.4, nice: 10 },
      ],
      rules,
    );
    expect(next).toEqual(new Map([['ten_a', 12]]));
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 1.3, nice: 12 },
          { tenant: 'ten_b', usedCores: 0.7, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(new Map([['ten_a', 13]]));
  });

  it('leaves tenants near an equal share as they are, and brings back one that now takes less', () => {
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 1.05, nice: 14 },
          { tenant: 'ten_b', usedCores: 0.95, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(new Map());
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 0.5, nice: 14 },
          { tenant: 'ten_b', usedCores: 1.5, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(
      new Map([
        ['ten_a', 13],
        ['ten_b', 12],
      ]),
    );
  });

  it('never goes below the base or above the floor of priorities', () => {
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 1.9, nice: 19 },
          { tenant: 'ten_b', usedCores: 0.1, nice: 10 },
          { tenant: 'ten_c', usedCores: 0.12, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(new Map());
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 1.9, nice: 18 },
          { tenant: 'ten_b', usedCores: 0.1, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(new Map([['ten_a', 19]]));
  });

  it('brings a tenant back a step at a time once no other tenant wants CPU: alone it costs nothing', () => {
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 2, nice: 16 },
          { tenant: 'ten_b', usedCores: 0.02, nice: 10 },
        ],
        rules,
      ),
    ).toEqual(new Map([['ten_a', 15]]));
    expect(steerNiceness([{ tenant: 'ten_a', usedCores: 2, nice: 10 }], rules)).toEqual(new Map());
    expect(steerNiceness([], rules)).toEqual(new Map());
  });

  it('counts a tenant whose calls wait for a child as wanting CPU, whatever it used', () => {
    expect(
      steerNiceness(
        [
          { tenant: 'ten_a', usedCores: 1.9, nice: 10 },
          { tenant: 'ten_b', usedCores: 0, nice: 10, waiting: true },
        ],
        rules,
      ),
    ).toEqual(new Map([['ten_a', 12]]));
  });
});
