import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const LOGGER = fileURLToPath(new URL('./logger.ts', import.meta.url));

interface Run {
  readonly code: number | null;
  /** Each chunk read from the process's stdout, with when it came (ms after spawn). */
  readonly chunks: ReadonlyArray<{ readonly at: number; readonly text: string }>;
  /** When the process exited (ms after spawn). */
  readonly exitedAt: number;
}

/** Runs `body` in a process of its own with `logger` = createLogger on bufferedStdout(). */
function run(body: string): Promise<Run> {
  const source = `
    import { bufferedStdout, createLogger } from ${JSON.stringify(LOGGER)};
    const logger = createLogger({ level: 'info', destination: bufferedStdout() });
    ${body}
  `;
  const started = performance.now();
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    // stderr is read and dropped: the uncaught error's report is expected.
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr.resume();
  const chunks: Array<{ at: number; text: string }> = [];
  child.stdout.on('data', (chunk: Buffer) =>
    chunks.push({ at: performance.now() - started, text: chunk.toString('utf8') }),
  );
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, chunks, exitedAt: performance.now() - started }));
  });
}

function lines(result: Run): string[] {
  return result.chunks
    .map((c) => c.text)
    .join('')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { msg: string }).msg);
}

describe('bufferedStdout (the service log destination)', () => {
  it('writes a held line within the flush interval, while the process goes on', async () => {
    const result = await run(`
      logger.info('first');
      setTimeout(() => process.exit(0), 2_000);
    `);
    expect(result.code).toBe(0);
    expect(lines(result)).toEqual(['first']);
    // Written by the periodic flush (250 ms), not only at exit 2 s later.
    expect(result.chunks[0]?.at).toBeLessThan(result.exitedAt - 1_000);
  });

  it('writes every held line when the process exits at once', async () => {
    const result = await run(`
      for (let i = 0; i < 50; i++) logger.info('line ' + i);
      process.exit(3);
    `);
    expect(result.code).toBe(3);
    expect(lines(result)).toEqual(Array.from({ length: 50 }, (_, i) => `line ${i}`));
  });

  it('writes every held line when the process dies of an uncaught error', async () => {
    const result = await run(`
      logger.info('before the crash');
      setImmediate(() => { throw new Error('boom'); });
    `);
    expect(result.code).not.toBe(0);
    expect(lines(result)).toEqual(['before the crash']);
  });
});
