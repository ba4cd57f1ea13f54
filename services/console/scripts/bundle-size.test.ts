import { describe, expect, it } from 'vitest';
import { INITIAL_BUNDLE_LIMIT_BYTES, ensureConsoleBuilt, initialBundle } from './console-build.ts';

describe('console bundle', () => {
  it('keeps what the first page load fetches within 300 KB gzipped', async () => {
    await ensureConsoleBuilt();
    const { files, gzipBytes } = initialBundle();
    console.log(
      `console: initial bundle ${(gzipBytes / 1024).toFixed(1)} KB gzipped (${files.map((f) => `${f.file} ${f.gzipBytes}`).join(', ')})`,
    );
    expect(files.some((f) => f.file.endsWith('.js'))).toBe(true);
    expect(files.some((f) => f.file.endsWith('.css'))).toBe(true);
    expect(gzipBytes).toBeLessThanOrEqual(INITIAL_BUNDLE_LIMIT_BYTES);
  });
});
