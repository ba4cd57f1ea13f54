/**
 * The isolate part of execute's floor (issue 20): CPU of a fresh isolate created, a trivial async
 * script compiled and run, and the isolate disposed, in one process with no IPC.
 *
 * `floorIsolateCpuMs` times it in the calling process alone, with the rest of the machine idle.
 * `saturatedFloorIsolateCpuMs` times the same loop in one process per core at once, so every
 * core is busy as it is during the concurrency-16 execute phase: on machines whose cores share
 * a physical core or a hypervisor's attention, each piece of work costs more CPU when all cores
 * run at once (on a 2-vCPU Firecracker guest, 1.2–1.5× for this loop), and that share of
 * `execute_cpu_ms_per_call` is the machine's, not Warden's.
 *
 * Run as a script, this file is one such process: it warms up, says `ready`, waits for `go`,
 * and answers with its CPU per iteration.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import ivm from 'isolated-vm';

const WARM_UP_ITERATIONS = 20;

async function isolateOnce(): Promise<void> {
  const isolate = new ivm.Isolate({ memoryLimit: 128 });
  const context = isolate.createContextSync();
  const script = isolate.compileScriptSync('(async () => 42)()');
  await script.run(context, { promise: true, copy: true });
  script.release();
  context.release();
  isolate.dispose();
}

async function timedLoop(iterations: number): Promise<number> {
  const start = process.cpuUsage();
  for (let i = 0; i < iterations; i++) await isolateOnce();
  const usage = process.cpuUsage(start);
  return (usage.user + usage.system) / 1000 / iterations;
}

/** CPU ms of one isolate's life, in this process, the machine otherwise idle. */
export async function floorIsolateCpuMs(iterations: number): Promise<number> {
  for (let i = 0; i < WARM_UP_ITERATIONS; i++) await isolateOnce();
  return timedLoop(iterations);
}

type FloorMessage = { readonly type: 'ready' } | { readonly type: 'result'; readonly cpuMs: number };

/**
 * CPU ms of one isolate's life with every core running the same loop at once (one process per
 * core, started together after each has warmed up): the mean over the processes.
 */
export async function saturatedFloorIsolateCpuMs(iterations: number): Promise<number> {
  const entry = fileURLToPath(import.meta.url);
  const children: ChildProcess[] = [];
  try {
    for (let i = 0; i < availableParallelism(); i++) {
      children.push(
        fork(entry, [String(iterations)], {
          execArgv: ['--no-node-snapshot'],
          stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
        }),
      );
    }
    const next = (child: ChildProcess, type: FloorMessage['type']) =>
      new Promise<FloorMessage>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`floor process exited (${code}) before '${type}'`)));
        child.on('message', (message: FloorMessage) => {
          if (message.type === type) resolve(message);
        });
      });
    await Promise.all(children.map((child) => next(child, 'ready')));
    const results = children.map((child) => next(child, 'result'));
    for (const child of children) child.send('go');
    const perIteration = (await Promise.all(results)).map((message) =>
      message.type === 'result' ? message.cpuMs : Number.NaN,
    );
    return perIteration.reduce((sum, ms) => sum + ms, 0) / perIteration.length;
  } finally {
    for (const child of children) {
      if (child.exitCode === null) {
        child.kill();
        await once(child, 'exit');
      }
    }
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.send) {
  const iterations = Number(process.argv[2]);
  for (let i = 0; i < WARM_UP_ITERATIONS; i++) await isolateOnce();
  process.send({ type: 'ready' } satisfies FloorMessage);
  await once(process, 'message');
  const cpuMs = await timedLoop(iterations);
  process.send({ type: 'result', cpuMs } satisfies FloorMessage, () => process.disconnect());
}
