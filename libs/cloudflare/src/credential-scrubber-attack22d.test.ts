import { describe, expect, it } from 'vitest';
import { credentialScrubber } from './credential.ts';
import type { CloudflareCredential } from './credential.ts';

/**
 * attack22d: the JSON `\u` path of `credentialScrubber` (attack22c's fix) parses and re-serializes
 * every response body holding a `\u`, whatever its content type (a Workers KV value, an R2-like
 * download, a tail event), on the parent's event loop. A body an agent controls (a KV value it
 * wrote, then reads back) makes each read cost that parse. A test FAILS on a bug.
 */
const credential = {
  type: 'api_token',
  apiToken: `tok_${'A'.repeat(36)}`,
} as unknown as CloudflareCredential;

describe('attack22d credentialScrubber cost', () => {
  it('scrubs a 10 MB body of nested arrays holding one \\u escape (no secret in it) within 600 ms', () => {
    const scrub = credentialScrubber(credential);
    const depth = 5_000_000;
    const body = Buffer.from(`${'['.repeat(depth)}"\\u0041"${']'.repeat(depth)}`);
    expect(body.length).toBeLessThan(10 * 1024 * 1024); // under the client's response cap
    scrub(Buffer.from('warm up'));
    const started = performance.now();
    const out = scrub(body);
    const elapsed = performance.now() - started;
    expect(out.equals(body)).toBe(true);
    // With a JSON.parse of every body holding a \u this took 1.1-1.3 s; one pass over the bytes
    // takes tens of ms. The bound is a guard against that blow-up, not a benchmark.
    expect(elapsed, `one response held the event loop for ${elapsed.toFixed(0)} ms`).toBeLessThan(600);
  });

  it('HELD scrubs a 10 MB flat body of \\u escapes (no secret in it) within 600 ms', () => {
    const scrub = credentialScrubber(credential);
    const body = Buffer.from(`["${'\\u0041'.repeat(1_600_000)}"]`);
    const started = performance.now();
    scrub(body);
    expect(performance.now() - started).toBeLessThan(600);
  });
});
