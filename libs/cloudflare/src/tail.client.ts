import WebSocket from 'ws';
import { WardenError } from '@warden/core';

/**
 * Cloudflare's tail WebSocket speaks the `trace-v1` subprotocol and refuses a connection without
 * it; once open, the client sends its filters as one JSON message (`{filters: [...]}`) and then
 * receives one JSON trace event per message. This follows wrangler's tail
 * (cloudflare/workers-sdk, packages/wrangler/src/tail/createTail.ts: `new WebSocket(url,
 * "trace-v1", …)` and a JSON message sent on "open"; filters.ts: the filter list).
 */
export const TAIL_PROTOCOL = 'trace-v1';

/** One filter of the list the tail worker applies (wrangler's `TailAPIFilter`). */
export type TailApiFilter =
  | { readonly sampling_rate: number }
  | { readonly outcome: readonly string[] }
  | { readonly method: readonly string[] }
  | { readonly query: string };

export interface TailFilterMessage {
  readonly filters: readonly TailApiFilter[];
}

export interface TailCollectOptions {
  /** The session's WebSocket URL, as `POST …/tails` returned it. */
  readonly url: string;
  readonly filters: TailFilterMessage;
  /** How long to collect once connected. */
  readonly durationMs: number;
  /** Stop after this many events. */
  readonly maxEvents: number;
  /** An event longer than this (in UTF-8 bytes, after scrubbing) is cut, with a marker. */
  readonly maxEventBytes: number;
  /** Applied to every message before it is parsed: removes the credential's secrets. */
  readonly scrub: (message: Buffer) => Buffer;
  /** Ends collecting early (the execution ended); what arrived so far is kept. */
  readonly signal?: AbortSignal;
  readonly connectTimeoutMs?: number;
  readonly userAgent?: string;
}

export interface TailCollection {
  readonly events: unknown[];
  /** Why collecting stopped. */
  readonly ended: 'time' | 'max_events' | 'closed' | 'aborted';
  /** Events cut to `maxEventBytes`. */
  readonly cutEvents: number;
  /** Bytes received (after scrubbing). */
  readonly bytes: number;
}

function toBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/** A message as the result shows it: its JSON, or a marker with the start of an oversized one. */
function eventOf(message: Buffer, maxBytes: number): { event: unknown; cut: boolean } {
  const text = message.toString('utf8');
  if (message.length > maxBytes) {
    return {
      event: {
        truncated: true,
        bytes: message.length,
        preview: message
          .subarray(0, maxBytes)
          .toString('utf8')
          .replace(/\uFFFD$/, ''),
      },
      cut: true,
    };
  }
  try {
    return { event: JSON.parse(text) as unknown, cut: false };
  } catch {
    return { event: { text }, cut: false };
  }
}

/**
 * Connects to a tail session's WebSocket, sends the filters and collects events until the time,
 * the event cap, the server closing or `signal`. Never deletes the tail: its owner does. Rejects
 * with a `WardenError` when the connection cannot be made.
 */
export function collectTail(options: TailCollectOptions): Promise<TailCollection> {
  return new Promise((resolve, reject) => {
    const events: unknown[] = [];
    let cutEvents = 0;
    let bytes = 0;
    let opened = false;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    // The execution may have ended while the tail was being created: connect to nothing. (A
    // socket terminated while connecting emits 'error' on the next tick, and one with no
    // listener yet would have been thrown out of the process.)
    if (options.signal?.aborted) {
      resolve({ events, ended: 'aborted', cutEvents, bytes });
      return;
    }
    const socket = new WebSocket(options.url, TAIL_PROTOCOL, {
      handshakeTimeout: options.connectTimeoutMs ?? 10_000,
      maxPayload: 16 * 1024 * 1024,
      followRedirects: false,
      headers: { 'user-agent': options.userAgent ?? 'warden' },
    });
    const finish = (ended: TailCollection['ended']) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (socket.readyState === WebSocket.OPEN) socket.close(1000);
      else socket.terminate();
      resolve({ events, ended, cutEvents, bytes });
    };
    const fail = (error: WardenError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.terminate();
      reject(error);
    };
    const onAbort = () => finish('aborted');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('unexpected-response', (_request, response) => {
      fail(
        new WardenError(
          'upstream_error',
          `tail: the tail WebSocket refused the connection (HTTP ${response.statusCode ?? 'error'})`,
          { status: response.statusCode ?? null },
        ),
      );
    });
    socket.on('error', () => {
      if (opened) finish('closed');
      else fail(new WardenError('upstream_error', 'tail: could not connect to the tail WebSocket'));
    });
    socket.on('open', () => {
      if (socket.protocol !== TAIL_PROTOCOL) {
        fail(new WardenError('upstream_error', `tail: the tail WebSocket did not accept ${TAIL_PROTOCOL}`));
        return;
      }
      opened = true;
      socket.send(JSON.stringify(options.filters));
      timer = setTimeout(() => finish('time'), options.durationMs);
    });
    socket.on('message', (data) => {
      if (settled) return;
      const message = options.scrub(toBuffer(data));
      bytes += message.length;
      const { event, cut } = eventOf(message, options.maxEventBytes);
      if (cut) cutEvents++;
      events.push(event);
      if (events.length >= options.maxEvents) finish('max_events');
    });
    socket.on('close', () => {
      if (opened) finish('closed');
      else fail(new WardenError('upstream_error', 'tail: the tail WebSocket closed before it opened'));
    });
  });
}
