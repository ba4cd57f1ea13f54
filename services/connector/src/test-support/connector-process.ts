import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './free-port.ts';
import { REPO_ROOT } from './paths.ts';

/** Kept per child so a failure can show why the process died without holding megabytes of logs. */
const OUTPUT_LIMIT = 64 * 1024;
const STOP_TIMEOUT_MS = 40_000;

export interface ConnectorProcess {
  /** `http://127.0.0.1:PORT`, also its PUBLIC_URL. */
  readonly url: string;
  readonly pid: number;
  /** The tail of what the process wrote to stderr and stdout (its logs). */
  output(): string;
  /** Throws with the process's output when it is no longer running. */
  assertRunning(): void;
  /**
   * SIGTERM, then waits for the exit (SIGKILL if the graceful shutdown hangs). Throws, with the
   * output, when the process had already died, hung or exited with an error.
   */
  stop(): Promise<void>;
  /** Sends `signal` (a crash: SIGKILL) and waits for the exit; resolves with the exit code or signal. */
  kill(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function appendCapped(current: string, chunk: Buffer): string {
  const next = current + chunk.toString('utf8');
  return next.length > OUTPUT_LIMIT ? next.slice(-OUTPUT_LIMIT) : next;
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (exited(child)) return true;
  const timeout = AbortSignal.timeout(timeoutMs);
  try {
    await once(child, 'exit', { signal: timeout });
    return true;
  } catch {
    return exited(child);
  }
}

async function spawnOnce(
  name: string,
  port: number,
  env: Readonly<Record<string, string>>,
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const url = `http://127.0.0.1:${port}`;
  // Only what the service needs: the vitest worker's own variables (NODE_OPTIONS and the like)
  // must not leak into a process that is meant to start exactly as in production.
  const childEnv: Record<string, string> = {
    ...(process.env.PATH ? { PATH: process.env.PATH } : {}),
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    HOST: '127.0.0.1',
    PORT: String(port),
    PUBLIC_URL: url,
    ...env,
  };
  const child = spawn(process.execPath, ['--no-node-snapshot', 'services/connector/src/main.ts'], {
    cwd: REPO_ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  // Both pipes are drained: a full pipe would block the child's log writes and stall it.
  child.stdout?.on('data', (chunk: Buffer) => (output = appendCapped(output, chunk)));
  child.stderr?.on('data', (chunk: Buffer) => (output = appendCapped(output, chunk)));
  child.on(
    'error',
    (error) => (output = appendCapped(output, Buffer.from(`spawn error: ${error.message}\n`))),
  );
  return { child, url, output: () => `[${name}] ${output}` };
}

/**
 * Starts the real connector (`node services/connector/src/main.ts`) as a child process on a
 * free loopback port and waits until `/readyz` answers ready. A child that exits early fails the
 * start with its output; a port taken between `freePort()` and `listen` is retried on another.
 */
export async function startConnectorProcess(
  name: string,
  env: Readonly<Record<string, string>>,
  options: { readyTimeoutMs?: number } = {},
): Promise<ConnectorProcess> {
  const readyTimeoutMs = options.readyTimeoutMs ?? 120_000;
  for (let attempt = 1; ; attempt++) {
    const { child, url, output } = await spawnOnce(name, await freePort(), env);
    const deadline = Date.now() + readyTimeoutMs;
    let lastStatus: string;
    while (!exited(child)) {
      try {
        const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(5_000) });
        const body = await res.text();
        if (res.status === 200) {
          const assertRunning = (): void => {
            if (exited(child)) {
              throw new Error(
                `connector ${name} exited (code ${child.exitCode}, signal ${child.signalCode}):\n${output()}`,
              );
            }
          };
          return {
            url,
            pid: child.pid ?? -1,
            output,
            assertRunning,
            async stop() {
              // Dying before it was asked to is a failure of the test, with the reason shown.
              assertRunning();
              child.kill('SIGTERM');
              if (!(await waitForExit(child, STOP_TIMEOUT_MS))) {
                child.kill('SIGKILL');
                await waitForExit(child, 5_000);
                throw new Error(`connector ${name} did not shut down on SIGTERM:\n${output()}`);
              }
              if (child.exitCode !== 0) {
                throw new Error(`connector ${name} shut down with code ${child.exitCode}:\n${output()}`);
              }
            },
            async kill(signal) {
              assertRunning();
              child.kill(signal);
              if (!(await waitForExit(child, STOP_TIMEOUT_MS))) {
                child.kill('SIGKILL');
                await waitForExit(child, 5_000);
                throw new Error(`connector ${name} did not exit on ${signal}:\n${output()}`);
              }
              return { code: child.exitCode, signal: child.signalCode };
            },
          };
        }
        lastStatus = `${res.status} ${body}`;
      } catch (error) {
        lastStatus = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        await waitForExit(child, 5_000);
        throw new Error(
          `connector ${name} was not ready within ${readyTimeoutMs} ms (last /readyz: ${lastStatus}):\n${output()}`,
        );
      }
      await delay(250);
    }
    await waitForExit(child, 5_000);
    if (attempt < 3 && output().includes('EADDRINUSE')) continue;
    throw new Error(
      `connector ${name} exited before it was ready (code ${child.exitCode}, signal ${child.signalCode}):\n${output()}`,
    );
  }
}
