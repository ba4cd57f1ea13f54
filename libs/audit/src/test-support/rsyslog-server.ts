import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const INSTALL_HINT =
  'Install the Debian packages: apt-get install -y rsyslog rsyslog-gnutls ' +
  '(rsyslog provides rsyslogd and imtcp, rsyslog-gnutls the TLS stream driver lmnsd_gtls).';

function findRsyslogd(): string {
  for (const candidate of ['/usr/sbin/rsyslogd', '/sbin/rsyslogd']) {
    if (existsSync(candidate)) return candidate;
  }
  try {
    return execFileSync('sh', ['-c', 'command -v rsyslogd'], { encoding: 'utf8' }).trim();
  } catch (error) {
    throw new Error(`rsyslogd not found. The syslog sink is tested against a real rsyslog. ${INSTALL_HINT}`, {
      cause: error,
    });
  }
}

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

async function waitForPort(port: number, deadline: number, log: () => string): Promise<void> {
  while (Date.now() < deadline) {
    const socket = connect(port, '127.0.0.1');
    const result = await new Promise<boolean>((resolve) => {
      socket.once('connect', () => resolve(true));
      socket.once('error', () => resolve(false));
    });
    socket.destroy();
    if (result) return;
    await sleep(100);
  }
  throw new Error(`rsyslogd did not listen on 127.0.0.1:${port}\n${log()}`);
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

export interface TestCertificates {
  readonly caPem: string;
  readonly dir: string;
}

/** A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI. */
export function makeCertificates(dir: string, name = 'warden-test-ca'): TestCertificates {
  mkdirSync(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
  ]);
  openssl(dir, ['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost']);
  writeFileSync(path.join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '1',
    '-extfile',
    'san.cnf',
  ]);
  return { caPem: readFileSync(path.join(dir, 'ca.pem'), 'utf8'), dir };
}

export interface RsyslogServer {
  readonly tcpPort: number;
  readonly tlsPort: number;
  readonly caPem: string;
  /** Everything rsyslog wrote with RSYSLOG_SyslogProtocol23Format, one message per line. */
  readLines(): string[];
  /** Polls the output file until `done` holds, or fails with what rsyslog said. */
  waitFor(done: (lines: string[]) => boolean, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * A real rsyslogd in the foreground with its own config, work directory and pid file under a
 * temporary directory: a plain imtcp listener and a TLS (gtls, anonymous client) listener,
 * both on loopback, both writing the full RFC 5424 message to one file. The system's
 * rsyslog.conf and /dev/log are never touched (no imuxsock).
 */
export async function startRsyslog(): Promise<RsyslogServer> {
  const binary = findRsyslogd();
  const dir = mkdtempSync(path.join(tmpdir(), 'warden-rsyslog-'));
  const work = path.join(dir, 'work');
  mkdirSync(work);
  const { caPem } = makeCertificates(path.join(dir, 'tls'));
  const tls = path.join(dir, 'tls');
  const output = path.join(dir, 'messages.log');
  const [tcpPort, tlsPort] = [await freePort(), await freePort()];
  const config = path.join(dir, 'rsyslog.conf');
  writeFileSync(
    config,
    `global(
  workDirectory="${work}"
  maxMessageSize="64k"
  defaultNetstreamDriverCAFile="${tls}/ca.pem"
  defaultNetstreamDriverCertFile="${tls}/server.pem"
  defaultNetstreamDriverKeyFile="${tls}/server.key"
)
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="${tcpPort}" ruleset="warden")
input(type="imtcp" address="127.0.0.1" port="${tlsPort}" ruleset="warden"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
ruleset(name="warden") {
  action(type="omfile" file="${output}" template="RSYSLOG_SyslogProtocol23Format" flushOnTXEnd="on")
}
`,
  );
  try {
    execFileSync(binary, ['-N1', '-f', config], { stdio: 'pipe' });
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`rsyslogd rejected the test config:\n${stderr}\n${INSTALL_HINT}`, { cause: error });
  }
  let log = '';
  const child: ChildProcess = spawn(binary, ['-n', '-f', config, '-i', path.join(dir, 'rsyslogd.pid')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 15_000;
  try {
    await waitForPort(tcpPort, deadline, () => log);
    await waitForPort(tlsPort, deadline, () => log);
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }

  const readLines = (): string[] =>
    existsSync(output)
      ? readFileSync(output, 'utf8')
          .split('\n')
          .filter((line) => line !== '')
      : [];

  return {
    tcpPort,
    tlsPort,
    caPem,
    readLines,
    async waitFor(done, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const lines = readLines();
        if (done(lines)) return lines;
        if (Date.now() > until) {
          throw new Error(
            `rsyslog did not write the expected messages.\nFile:\n${lines.join('\n')}\nrsyslogd:\n${log}`,
          );
        }
        await sleep(100);
      }
    },
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
