import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from './audit-event.ts';
import type { AuditSink, SinkRuntimeOptions } from './audit-sink.ts';
import { DEFAULT_PRODUCT_VERSION } from './format-common.ts';
import type { SyslogSinkConfig } from './sink-config.ts';
import { createSyslogSink, frameOctetCounting, toSyslogMessage } from './syslog-sink.ts';
import { toolCallEvent, upstreamRequestEvent } from './test-support/audit-event-fixtures.ts';
import { makeCertificates, startRsyslog } from './test-support/rsyslog-server.ts';
import type { RsyslogServer } from './test-support/rsyslog-server.ts';

const LOCAL: SinkRuntimeOptions = {
  allowPrivateNetwork: true,
  hostname: 'warden-test.example',
  timeoutMs: 5_000,
};

interface Rfc5424 {
  readonly pri: number;
  readonly timestamp: string;
  readonly hostname: string;
  readonly appName: string;
  readonly procId: string;
  readonly msgId: string;
  readonly sdId: string;
  readonly params: Record<string, string>;
  readonly msg: string;
}

const LINE = /^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[(?:[^\]\\]|\\.)*\]) (.*)$/s;

function parseRfc5424(line: string): Rfc5424 {
  const match = LINE.exec(line);
  if (!match) throw new Error(`not an RFC 5424 message with structured data: ${line.slice(0, 300)}`);
  const [, pri, timestamp, hostname, appName, procId, msgId, sd, msg] = match as unknown as string[];
  const element = /^\[(\S+) (.*)\]$/s.exec(sd ?? '');
  const params: Record<string, string> = {};
  for (const param of (element?.[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
    params[param[1] ?? ''] = (param[2] ?? '').replace(/\\(["\\\]])/g, '$1');
  }
  return {
    pri: Number(pri),
    timestamp: timestamp ?? '',
    hostname: hostname ?? '',
    appName: appName ?? '',
    procId: procId ?? '',
    msgId: msgId ?? '',
    sdId: element?.[1] ?? '',
    params,
    msg: msg ?? '',
  };
}

/** RFC 6587 octet counting, read back: `LEN SP MSG` repeated. */
function parseFrames(bytes: Buffer): string[] {
  const frames: string[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const space = bytes.indexOf(0x20, offset);
    const length = Number(bytes.subarray(offset, space).toString('ascii'));
    expect(Number.isInteger(length) && length > 0).toBe(true);
    frames.push(bytes.subarray(space + 1, space + 1 + length).toString('utf8'));
    offset = space + 1 + length;
  }
  expect(offset).toBe(bytes.length);
  return frames;
}

const success = toolCallEvent({ id: 'aud_syslog0000000000001', seq: 1 });
const refused = upstreamRequestEvent('DELETE', {
  id: 'aud_syslog0000000000002',
  seq: 2,
  outcome: 'refused',
  execution_id: 'exe_"quoted"\\back]slash',
  identifier: 'ünïcødé user',
  error: { code: 'policy_denied', message: 'DELETE is not allowed\nfor read-only tokens' },
});
const longCode = toolCallEvent({
  id: 'aud_syslog0000000000003',
  seq: 3,
  outcome: 'error',
  action: 'tool.execute with spaces and a very long name that overflows',
  code: `line one\nline two\r\n${'z'.repeat(10_000)}`,
});

describe('RFC 5424 message', () => {
  const options = { facility: 13, hostname: 'warden-1', appName: 'warden', messageFormat: 'json' } as const;

  it('has the header, the structured data and the JSON event', () => {
    const message = toSyslogMessage(success, options);
    expect(message).toBe(
      `<110>1 2026-01-01T12:00:00.123Z warden-1 warden - tool.execute ` +
        `[warden@32473 id="aud_syslog0000000000001" tenant="ten_0123456789abcdefghij" seq="1" kind="tool_call" ` +
        `outcome="success" execution="exe_0123456789abcdefghij"] ${JSON.stringify(success)}`,
    );
  });

  it('uses warning for refusals and errors, escapes SD values and keeps MSG on one line', () => {
    const parsed = parseRfc5424(toSyslogMessage(refused, options));
    expect(parsed.pri).toBe(13 * 8 + 4);
    expect(parsed.params.execution).toBe('exe_"quoted"\\back]slash');
    expect(toSyslogMessage(refused, options)).toContain('execution="exe_\\"quoted\\"\\\\back\\]slash"');
    const long = toSyslogMessage(longCode, options);
    expect(long).not.toMatch(/[\r\n]/);
    // MSGID is at most 32 printable ASCII characters.
    expect(parseRfc5424(long).msgId).toBe('tool.execute_with_spaces_and_a_v');
  });

  it('frames by octets, not characters', () => {
    const frame = frameOctetCounting('<110>1 - - - - - - ünï');
    expect(frame.toString('utf8')).toBe(
      `${Buffer.byteLength('<110>1 - - - - - - ünï')} <110>1 - - - - - - ünï`,
    );
    expect(parseFrames(Buffer.concat([frame, frame]))).toEqual([
      '<110>1 - - - - - - ünï',
      '<110>1 - - - - - - ünï',
    ]);
  });
});

describe('syslog sink connection', () => {
  let server: Server;
  let port: number;
  const connections: Socket[] = [];
  const received: Buffer[] = [];
  const sinks: AuditSink[] = [];

  beforeAll(async () => {
    server = createServer((socket) => {
      connections.push(socket);
      socket.on('data', (chunk: Buffer) => received.push(chunk));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as AddressInfo).port;
  });
  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((sink) => sink.close()));
    connections.splice(0).forEach((socket) => socket.destroy());
    received.splice(0);
  });
  afterAll(async () => {
    server.close();
  });

  function sink(overrides: Partial<SyslogSinkConfig> = {}): AuditSink {
    const created = createSyslogSink(
      { type: 'syslog', host: '127.0.0.1', port, transport: 'tcp', ...overrides },
      LOCAL,
    );
    sinks.push(created);
    return created;
  }

  async function frames(count: number): Promise<string[]> {
    for (let i = 0; i < 100; i += 1) {
      const all = Buffer.concat(received);
      if (all.length > 0) {
        const parsed = parseFrames(all);
        if (parsed.length >= count) return parsed;
      }
      await sleep(20);
    }
    throw new Error('frames did not arrive');
  }

  it('keeps one connection for many batches', async () => {
    const syslog = sink();
    await syslog.send([success, refused]);
    await syslog.send([longCode]);
    const messages = await frames(3);
    expect(messages.map((message) => parseRfc5424(message).params.id)).toEqual([
      success.id,
      refused.id,
      longCode.id,
    ]);
    expect(connections).toHaveLength(1);
  });

  it('reconnects after the receiver closes the connection', async () => {
    const syslog = sink();
    await syslog.send([success]);
    await frames(1);
    connections[0]?.destroy();
    // Let the FIN reach the client; the next batch must go over a new connection.
    await sleep(200);
    await syslog.send([refused]);
    const messages = await frames(2);
    expect(messages.map((message) => parseRfc5424(message).params.id)).toEqual([success.id, refused.id]);
    expect(connections).toHaveLength(2);
  });

  it('fails retryably when nothing listens, and refuses sends after close', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = probe.address() as AddressInfo;
        probe.close(() => resolve(free));
      });
    });
    const syslog = sink({ port: closedPort });
    await expect(syslog.send([success])).rejects.toMatchObject({
      message: 'syslog delivery failed: ECONNREFUSED',
      retryable: true,
    });
    await syslog.close();
    await expect(syslog.send([success])).rejects.toThrow('closed');
  });

  it('refuses private destinations unless allowed', () => {
    expect(() => createSyslogSink({ type: 'syslog', host: '127.0.0.1', port, transport: 'tcp' })).toThrow(
      'host: must not be a loopback, private or link-local address',
    );
  });
});

describe('syslog sink against rsyslogd', () => {
  let rsyslog: RsyslogServer;
  const sinks: AuditSink[] = [];

  beforeAll(async () => {
    rsyslog = await startRsyslog();
  });
  afterEach(async () => {
    await Promise.all(sinks.splice(0).map((sink) => sink.close()));
  });
  afterAll(async () => {
    await rsyslog?.stop();
  });

  function sink(config: Partial<SyslogSinkConfig>): AuditSink {
    const created = createSyslogSink(
      { type: 'syslog', host: '127.0.0.1', port: rsyslog.tcpPort, transport: 'tcp', ...config },
      LOCAL,
    );
    sinks.push(created);
    return created;
  }

  async function receivedFor(events: readonly AuditEvent[]): Promise<Map<string, Rfc5424>> {
    const ids = new Set(events.map((event) => event.id));
    const lines = await rsyslog.waitFor((all) =>
      [...ids].every((id) => all.some((line) => line.includes(`id="${id}"`))),
    );
    const byId = new Map<string, Rfc5424>();
    for (const line of lines) {
      const parsed = parseRfc5424(line);
      const id = parsed.params.id;
      if (id && ids.has(id)) byId.set(id, parsed);
    }
    return byId;
  }

  it('delivers RFC 5424 messages over TCP with octet counting', async () => {
    const events = [success, refused, longCode];
    await sink({}).send(events);
    const messages = await receivedFor(events);
    const ok = messages.get(success.id);
    expect(ok).toMatchObject({
      pri: 13 * 8 + 6,
      timestamp: '2026-01-01T12:00:00.123Z',
      hostname: 'warden-test.example',
      appName: 'warden',
      procId: '-',
      msgId: 'tool.execute',
      sdId: 'warden@32473',
      params: {
        id: success.id,
        tenant: success.tenant_id,
        seq: '1',
        kind: 'tool_call',
        outcome: 'success',
        execution: 'exe_0123456789abcdefghij',
      },
    });
    expect(JSON.parse(ok?.msg ?? '')).toEqual(success);
    const denied = messages.get(refused.id);
    expect(denied).toMatchObject({ pri: 13 * 8 + 4, msgId: 'cloudflare.request' });
    expect(denied?.params).toMatchObject({ outcome: 'refused', execution: 'exe_"quoted"\\back]slash' });
    expect(JSON.parse(denied?.msg ?? '')).toEqual(refused);
    const long = JSON.parse(messages.get(longCode.id)?.msg ?? '') as AuditEvent;
    expect(long.code).toHaveLength(4_000);
    expect(long.code?.startsWith('line one\nline two\r\nzzz')).toBe(true);
    expect(long.code).toMatch(/\.\.\.\[truncated, 10019 chars\]$/);
    expect({ ...long, code: null }).toEqual({ ...longCode, code: null });
  });

  it('delivers over TLS (RFC 5425) to a receiver with a private CA, with a configurable facility and CEF body', async () => {
    const event = toolCallEvent({ id: 'aud_syslogtls000000001' });
    await sink({
      port: rsyslog.tlsPort,
      transport: 'tls',
      ca: rsyslog.caPem,
      facility: 16,
      message_format: 'cef',
    }).send([event]);
    const message = (await receivedFor([event])).get(event.id);
    expect(message?.pri).toBe(16 * 8 + 6);
    expect(
      message?.msg.startsWith(
        `CEF:0|Warden|Warden|${DEFAULT_PRODUCT_VERSION}|tool.execute|tool.execute cloudflare_execute|3|`,
      ),
    ).toBe(true);
    expect(message?.msg).toContain(`externalId=${event.id}`);
  });

  it('refuses a receiver whose certificate does not verify', async () => {
    const otherDir = mkdtempSync(path.join(tmpdir(), 'warden-other-ca-'));
    const other = makeCertificates(otherDir, 'other-ca');
    rmSync(otherDir, { recursive: true, force: true });
    const wrongCa = sink({ port: rsyslog.tlsPort, transport: 'tls', ca: other.caPem });
    await expect(wrongCa.send([success])).rejects.toMatchObject({
      retryable: true,
      message: expect.stringMatching(/^syslog delivery failed: [A-Z_]+$/),
    });
    const wrongName = sink({
      port: rsyslog.tlsPort,
      transport: 'tls',
      ca: rsyslog.caPem,
      server_name: 'wrong.example',
    });
    await expect(wrongName.send([success])).rejects.toMatchObject({
      message: 'syslog delivery failed: ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });
});
