import { once } from 'node:events';
import { connect as netConnect, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import type { AuditEvent } from './audit-event.ts';
import { toCefLine } from './cef-format.ts';
import { DEFAULT_SINK_TIMEOUT_MS } from './audit-sink.ts';
import type { AuditSink, SinkRuntimeOptions } from './audit-sink.ts';
import { severityOf, toJsonLine, truncateText, withCodeCapped } from './format-common.ts';
import { assertPublicHost, publicOnlyLookup } from './network-guard.ts';
import { parseSinkConfig } from './sink-config.ts';
import type { SyslogSinkConfig } from './sink-config.ts';
import { networkFailure } from './sink-errors.ts';

/**
 * 13 is "log audit" in RFC 5424's facility table: the one meant for audit trails, and one
 * a host's own daemons do not use, so receivers can route Warden's events by facility alone.
 */
export const DEFAULT_SYSLOG_FACILITY = 13;

/**
 * SD-ID `name@<private enterprise number>`. 32473 is the number RFC 5612 reserves for
 * documentation; a deployment with its own IANA number should use that instead.
 */
export const SYSLOG_SD_ID = 'warden@32473';

/** rsyslog's default maxMessageSize is 8 KiB; the rest of the event must still fit beside the code. */
const DEFAULT_MAX_CODE_CHARS = 4_000;

export interface SyslogMessageOptions {
  readonly facility: number;
  readonly hostname: string;
  readonly appName: string;
  readonly messageFormat: 'json' | 'cef';
  readonly maxCodeChars?: number;
  readonly productVersion?: string;
}

/** RFC 5424 header fields are 1*nPRINTUSASCII; anything else is replaced, and empty is NILVALUE. */
function headerToken(value: string, max: number): string {
  const token = value.replace(/[^\x21-\x7e]/g, '_').slice(0, max);
  return token === '' ? '-' : token;
}

/** SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3); controls have no business there. */
function paramValue(value: string): string {
  return truncateText(value.toWellFormed().replace(/\p{Cc}/gu, '\uFFFD'), 256).replace(/["\\\]]/g, '\\$&');
}

function structuredData(event: AuditEvent): string {
  const params: Array<[string, string | number | null]> = [
    ['id', event.id],
    ['tenant', event.tenant_id],
    ['seq', event.seq],
    ['kind', event.kind],
    ['outcome', event.outcome],
    ['execution', event.execution_id],
  ];
  const rendered = params
    .filter((param): param is [string, string | number] => param[1] !== null)
    .map(([name, value]) => `${name}="${paramValue(String(value))}"`)
    .join(' ');
  return `[${SYSLOG_SD_ID} ${rendered}]`;
}

/**
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`. The timestamp is when the event
 * happened, not when it was sent: deliveries can be retried hours later. MSGID is the action
 * (`tool.execute`, `cloudflare.request`). MSG is plain (MSG-ANY, no BOM) so that it is exactly
 * the JSON or CEF text a SIEM parser expects.
 */
export function toSyslogMessage(event: AuditEvent, options: SyslogMessageOptions): string {
  const pri = options.facility * 8 + severityOf(event.outcome).syslog;
  const timestamp = new Date(Date.parse(event.occurred_at)).toISOString();
  const capped = withCodeCapped(event, options.maxCodeChars);
  const line =
    options.messageFormat === 'cef'
      ? toCefLine(capped, { productVersion: options.productVersion })
      : toJsonLine(capped);
  return [
    `<${pri}>1`,
    timestamp,
    headerToken(options.hostname, 255),
    headerToken(options.appName, 48),
    '-',
    headerToken(event.action, 32),
    structuredData(event),
    line.slice(0, -1),
  ].join(' ');
}

/** RFC 6587 §3.4.1 octet counting: `MSG-LEN SP SYSLOG-MSG`, the length in bytes. */
export function frameOctetCounting(message: string): Buffer {
  const body = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `, 'ascii'), body]);
}

function timeoutError(what: string): Error {
  return Object.assign(new Error(`${what} timed out`), { code: 'ETIMEDOUT' });
}

/**
 * Keeps one connection open and writes each batch as one buffer of octet-counted frames.
 * A batch counts as sent once the kernel has it: syslog over TCP has no acknowledgement, so a
 * connection that dies right after a write can lose that batch. Failures drop the connection;
 * the next batch reconnects.
 */
export function createSyslogSink(config: SyslogSinkConfig, options: SinkRuntimeOptions = {}): AuditSink {
  const valid = parseSinkConfig(config, options) as SyslogSinkConfig;
  const timeoutMs = options.timeoutMs ?? DEFAULT_SINK_TIMEOUT_MS;
  const allowPrivate = options.allowPrivateNetwork === true;
  const messageOptions: SyslogMessageOptions = {
    facility: valid.facility ?? DEFAULT_SYSLOG_FACILITY,
    hostname: options.hostname ?? osHostname(),
    appName: valid.app_name ?? 'warden',
    messageFormat: valid.message_format ?? 'json',
    maxCodeChars: options.maxCodeChars ?? DEFAULT_MAX_CODE_CHARS,
    productVersion: options.productVersion,
  };
  let socket: Socket | null = null;
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;

  async function connect(): Promise<Socket> {
    if (!allowPrivate) assertPublicHost(valid.host);
    const target = {
      host: valid.host,
      port: valid.port,
      ...(allowPrivate ? {} : { lookup: publicOnlyLookup }),
    };
    const tls = valid.transport === 'tls';
    const next = tls
      ? tlsConnect({
          ...target,
          ca: valid.ca,
          servername: valid.server_name ?? (isIP(valid.host) === 0 ? valid.host : undefined),
          minVersion: 'TLSv1.2',
        })
      : netConnect(target);
    // Errors after connect surface through the pending write; this keeps them from crashing the process.
    next.on('error', () => {});
    next.setTimeout(timeoutMs, () => next.destroy(timeoutError('syslog connect')));
    try {
      await once(next, tls ? 'secureConnect' : 'connect');
    } catch (error) {
      next.destroy();
      throw error;
    }
    next.setTimeout(0);
    next.setKeepAlive(true, 30_000);
    // Receivers never talk back; a FIN from them means the connection is gone.
    next.resume();
    next.on('end', () => next.destroy());
    next.on('close', () => {
      if (socket === next) socket = null;
    });
    return next;
  }

  function write(target: Socket, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => target.destroy(timeoutError('syslog write')), timeoutMs);
      target.write(payload, (error) => {
        clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      });
    });
  }

  async function deliver(batch: readonly AuditEvent[]): Promise<void> {
    if (batch.length === 0) return;
    const payload = Buffer.concat(
      batch.map((event) => frameOctetCounting(toSyslogMessage(event, messageOptions))),
    );
    try {
      if (!socket || socket.destroyed || !socket.writable) socket = await connect();
      await write(socket, payload);
    } catch (error) {
      socket?.destroy();
      socket = null;
      throw networkFailure('syslog', error);
    }
  }

  // Batches go out one at a time so a reconnect never races another batch's write.
  function send(batch: readonly AuditEvent[]): Promise<void> {
    if (closed) return Promise.reject(new Error('syslog sink is closed'));
    const result = queue.then(() => deliver(batch));
    queue = result.catch(() => {});
    return result;
  }

  async function close(): Promise<void> {
    closed = true;
    await queue;
    const open = socket;
    socket = null;
    if (!open || open.destroyed) return;
    open.end();
    const timer = setTimeout(() => open.destroy(), timeoutMs);
    await once(open, 'close').catch(() => {});
    clearTimeout(timer);
  }

  return { type: 'syslog', send, close };
}
