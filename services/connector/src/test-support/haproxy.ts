import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './free-port.ts';

const INSTALL_HINT =
  "The multi-replica tests run behind a real HAProxy: `npm test` installs Debian's haproxy when it runs as root; otherwise run `sudo apt-get install -y haproxy`.";

function haproxyBinary(): string {
  for (const candidate of ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy']) {
    try {
      execFileSync(candidate, ['-v'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // Not there: try the next place, then PATH.
    }
  }
  try {
    return execFileSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new Error(`haproxy not found. ${INSTALL_HINT}`, { cause: error });
  }
}

export interface HaproxyBackend {
  readonly name: string;
  readonly port: number;
}

export interface Haproxy {
  /** `http://127.0.0.1:PORT`, the load balancer's front end. */
  readonly url: string;
  /** Each server's state as the health check sees it (`UP`, `DOWN`, `UP 1/2`, `DOWN 1/2`…). */
  serverStates(): Promise<Record<string, string>>;
  close(): Promise<void>;
}

/** Runs one command on the admin socket and returns what HAProxy answered. */
async function adminCommand(socketPath: string, command: string): Promise<string> {
  const socket = connect(socketPath);
  await once(socket, 'connect');
  socket.end(`${command}\n`);
  let answer = '';
  for await (const chunk of socket) answer += String(chunk);
  return answer;
}

/**
 * Debian's HAProxy in the foreground on a loopback port, balancing over `backends` with a health
 * check on `/readyz` every 500 ms (two failures take a server out, two successes put it back).
 * Only connection failures are retried, on another server (`option redispatch`): a request a
 * replica may have started is never sent twice. Each answer names the server that gave it
 * (`x-served-by`), including HAProxy's own 502/503 for a server that died under it.
 */
export async function startHaproxy(backends: readonly HaproxyBackend[]): Promise<Haproxy> {
  const binary = haproxyBinary();
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-haproxy-'));
  const socketPath = path.join(dir, 'admin.sock');
  const port = await freePort();
  const config = path.join(dir, 'haproxy.cfg');
  writeFileSync(
    config,
    `global
  stats socket ${socketPath} mode 600 level admin
  maxconn 512

defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 2
  option redispatch

frontend warden
  bind 127.0.0.1:${port}
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2
  http-after-response set-header x-served-by %[srv_name]
${backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check`).join('\n')}
`,
  );
  let output = '';
  const child: ChildProcess = spawn(binary, ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (c: Buffer) => (output = (output + String(c)).slice(-16_000)));
  child.stderr?.on('data', (c: Buffer) => (output = (output + String(c)).slice(-16_000)));
  const url = `http://127.0.0.1:${port}`;

  async function serverStates(): Promise<Record<string, string>> {
    const csv = await adminCommand(socketPath, 'show stat');
    const [header, ...lines] = csv.trim().split('\n');
    const columns = (header ?? '').replace(/^# /, '').split(',');
    const status = columns.indexOf('status');
    const states: Record<string, string> = {};
    for (const line of lines) {
      const fields = line.split(',');
      if (fields[0] === 'replicas' && fields[1] !== 'BACKEND') states[fields[1] ?? ''] = fields[status] ?? '';
    }
    return states;
  }

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`haproxy exited (code ${child.exitCode}):\n${output}\n${INSTALL_HINT}`);
    try {
      await serverStates();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`haproxy did not start:\n${output}`);
      await delay(100);
    }
  }
  return {
    url,
    serverStates,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), delay(5_000)]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
