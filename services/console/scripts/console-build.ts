import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CONSOLE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const CONSOLE_DIST = path.join(CONSOLE_ROOT, 'dist');
const STAMP = '.build-stamp';

function files(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const full = path.join(dir, name);
      return statSync(full).isDirectory() ? files(full) : [full];
    });
}

/** What the bundle is made of: the sources, the build settings and the locked dependencies. */
export function sourceHash(): string {
  const hash = createHash('sha256');
  const inputs = [
    ...files(path.join(CONSOLE_ROOT, 'src')),
    path.join(CONSOLE_ROOT, 'index.html'),
    path.join(CONSOLE_ROOT, 'vite.config.ts'),
    path.join(CONSOLE_ROOT, 'package.json'),
    path.join(CONSOLE_ROOT, '../../package-lock.json'),
  ];
  for (const file of inputs) {
    hash.update(path.relative(CONSOLE_ROOT, file)).update('\0').update(readFileSync(file)).update('\0');
  }
  return hash.digest('hex');
}

/**
 * Builds the console unless `dist/` already holds a build of exactly these sources, so `npm
 * start` pays for Vite only after a change. The build goes to a fresh folder that replaces
 * `dist/` at the end, so a running Warden never serves half a build.
 */
export async function ensureConsoleBuilt(
  options: { force?: boolean; log?: (line: string) => void } = {},
): Promise<{ built: boolean; ms: number }> {
  const started = Date.now();
  const wanted = sourceHash();
  const stampFile = path.join(CONSOLE_DIST, STAMP);
  if (!options.force && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === wanted) {
    return { built: false, ms: Date.now() - started };
  }
  options.log?.('building the admin console (Vite)');
  const { build } = await import('vite');
  const staging = path.join(CONSOLE_ROOT, `dist.build-${process.pid}`);
  rmSync(staging, { recursive: true, force: true });
  // Vite builds React's development bundle when NODE_ENV says so (vitest sets `test`).
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({
      root: CONSOLE_ROOT,
      configFile: path.join(CONSOLE_ROOT, 'vite.config.ts'),
      logLevel: 'warn',
      build: { outDir: staging, emptyOutDir: true },
    });
    writeFileSync(path.join(staging, STAMP), wanted);
    const previous = `${CONSOLE_DIST}.old-${process.pid}`;
    if (existsSync(CONSOLE_DIST)) renameSync(CONSOLE_DIST, previous);
    renameSync(staging, CONSOLE_DIST);
    rmSync(previous, { recursive: true, force: true });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
    rmSync(staging, { recursive: true, force: true });
  }
  return { built: true, ms: Date.now() - started };
}

/** The most the first page load may fetch, gzipped: the budget for the console. */
export const INITIAL_BUNDLE_LIMIT_BYTES = 300 * 1024;

/**
 * What a browser fetches before the console first renders, gzipped: every script, module
 * preload and stylesheet `index.html` names (pages loaded later, on navigation, are not counted).
 */
export function initialBundle(): { files: Array<{ file: string; gzipBytes: number }>; gzipBytes: number } {
  const html = readFileSync(path.join(CONSOLE_DIST, 'index.html'), 'utf8');
  const refs = [...html.matchAll(/(?:src|href)="\/console\/(assets\/[^"]+)"/g)].map((m) => m[1]!);
  const files = [...new Set(refs)].map((file) => ({
    file,
    gzipBytes: gzipSync(readFileSync(path.join(CONSOLE_DIST, file)), { level: 9 }).length,
  }));
  return { files, gzipBytes: files.reduce((n, f) => n + f.gzipBytes, 0) };
}
