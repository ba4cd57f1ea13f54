/**
 * Entry point of a sandbox child process, forked by the pool with an empty environment and
 * Node's permission model (reads limited to this package and isolated-vm; no writes, no
 * child processes). It holds no credential and no database or Redis handle, and gets even
 * the spec through its IPC channel: it runs isolates and relays `cloudflare.request`
 * payloads to the parent, which decides.
 */
import { ChildMonitor } from './child-monitor.ts';
import { ExecuteSandbox } from './execute.sandbox.ts';
import { SearchSandbox } from './search.sandbox.ts';
import type { ChildMessage, ParentMessage, UpstreamOutcome } from './sandbox.protocol.ts';

function send(message: ChildMessage): void {
  if (process.connected) process.send?.(message);
}

/** isolated-vm's advice: V8 has lost control of an isolate, so the process must go. */
function catastrophic(message: string): void {
  process.stderr.write(`isolated-vm catastrophic error: ${message}\n`);
  process.abort();
}

// The parent stops this process on the report: a thread stuck in a builtin would keep exit() waiting.
const monitor = new ChildMonitor({ onMemoryExceeded: (report) => send({ type: 'memory-exceeded', report }) });
const search = new SearchSandbox(catastrophic, monitor);
const execute = new ExecuteSandbox(catastrophic);
const pendingUpstream = new Map<string, (outcome: UpstreamOutcome) => void>();

async function runExecute(message: Extract<ParentMessage, { type: 'execute' }>): Promise<void> {
  let sequence = 0;
  const keys = new Set<string>();
  const requestUpstream = (payload: unknown): Promise<UpstreamOutcome> =>
    new Promise((resolve) => {
      const seq = ++sequence;
      const key = `${message.id}:${seq}`;
      keys.add(key);
      pendingUpstream.set(key, resolve);
      send({ type: 'upstream', id: message.id, seq, request: payload });
    });
  const result = await monitor.call(message.limits.memoryMb, () =>
    execute.execute(message.id, message.code, message.accountId, message.limits, requestUpstream),
  );
  for (const key of keys) {
    pendingUpstream.get(key)?.({ ok: false, code: 'aborted', message: 'the execution ended' });
    pendingUpstream.delete(key);
  }
  send({ type: 'result', id: message.id, result });
}

process.on('message', (message: ParentMessage) => {
  switch (message.type) {
    case 'load-spec':
      // The warm context's build is watched as the process's own memory (see SearchSandbox).
      search.load(message.spec, message.searchMemoryMb).then(
        () => send({ type: 'spec-loaded', version: message.spec.version }),
        (error: unknown) =>
          send({
            type: 'spec-failed',
            version: message.spec.version,
            message: error instanceof Error ? error.message : String(error),
          }),
      );
      return;
    case 'search':
      void search
        .search(message.id, message.code, message.access, message.limits)
        .then((result) => send({ type: 'result', id: message.id, result }));
      return;
    case 'execute':
      void runExecute(message);
      return;
    case 'upstream-outcome': {
      const key = `${message.id}:${message.seq}`;
      pendingUpstream.get(key)?.(message.outcome);
      pendingUpstream.delete(key);
      return;
    }
    case 'abort':
      // Ids are the parent's, one sequence for both kinds: only the call of that id stops.
      execute.abort(message.id);
      search.abort(message.id);
      return;
    case 'extend':
      execute.extend(message.id, message.ms);
      return;
    case 'release':
      void monitor.whenQuiet().then(() => send({ type: 'released' }));
      return;
  }
});

process.on('disconnect', () => {
  monitor.close();
  execute.close();
  process.exit(0);
});

send({ type: 'started' });
