import { describe, expect, it } from 'vitest';
import { createR2ByteBudget } from './r2-bytes.ts';

describe('the bound on R2 bytes held at once', () => {
  const budget = () => createR2ByteBudget({ processBytes: 100, tenantBytes: 60, waitMs: 50 });

  it('holds per tenant and for the process, and frees on release (once)', async () => {
    const b = budget();
    const a1 = await b.reserve('a', 60, 'get');
    const b1 = await b.reserve('b', 40, 'get');
    expect([b.held(), b.held('a'), b.held('b')]).toEqual([100, 60, 40]);
    a1();
    a1();
    expect([b.held(), b.held('a')]).toEqual([40, 0]);
    b1();
    expect(b.held()).toBe(0);
  });

  it('lets a transfer wait for room, and refuses it with what to do when none is made', async () => {
    const b = budget();
    const first = await b.reserve('a', 50, 'get');
    const waiting = b.reserve('a', 20, 'get');
    first();
    const second = await waiting;
    expect(b.held('a')).toBe(20);
    await expect(b.reserve('a', 50, 'get')).rejects.toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(
        /^r2\.get: 50 more bytes did not fit within 50 ms: this tenant's R2 transfers already hold 20 of 60 bytes \(R2_MAX_TENANT_BYTES_IN_FLIGHT\); run fewer r2 calls at once/,
      ),
      details: { retryAfterSeconds: 1 },
    });
    second();
    // The process bound: another tenant cannot take what two others hold.
    const held = [await b.reserve('a', 60, 'get'), await b.reserve('b', 30, 'put')];
    await expect(b.reserve('c', 20, 'get')).rejects.toMatchObject({
      message: expect.stringContaining('hold 90 of 100 bytes on this server (R2_MAX_BYTES_IN_FLIGHT)'),
    });
    for (const release of held) release();
    expect(b.held()).toBe(0);
  });

  it('stops waiting when the execution ends', async () => {
    const b = budget();
    const first = await b.reserve('a', 60, 'get');
    const controller = new AbortController();
    const waiting = b.reserve('a', 10, 'get', controller.signal);
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ code: 'upstream_error' });
    first();
    expect(b.held()).toBe(0);
  });
});
