import type { IncomingMessage, Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { FakeCloudflareState } from './fake-cloudflare.state.ts';

/** The subprotocol Cloudflare's tail WebSocket speaks; a connection without it is refused. */
export const TAIL_PROTOCOL = 'trace-v1';

export interface FakeTailSocketOptions {
  /** Milliseconds between two scripted events. Default 50. */
  readonly intervalMs?: number;
}

export interface FakeTailSockets {
  /** Upgrade requests refused (no such tail, a deleted one, or without the `trace-v1` subprotocol). */
  refused(): number;
  close(): void;
}

function refuse(socket: Duplex, status: string): void {
  socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** Whether a scripted event passes the filters the client sent (outcome, method, query). */
function passes(event: unknown, filters: unknown): boolean {
  const list = (filters as { filters?: unknown } | null)?.filters;
  if (!Array.isArray(list)) return true;
  const e = event as { outcome?: string; event?: { request?: { method?: string } } | null };
  for (const filter of list as Record<string, unknown>[]) {
    if (Array.isArray(filter.outcome) && !filter.outcome.includes(e.outcome)) return false;
    if (Array.isArray(filter.method) && !filter.method.includes(e.event?.request?.method)) return false;
    if (typeof filter.query === 'string' && !JSON.stringify(event).includes(filter.query)) return false;
  }
  return true;
}

/**
 * Serves the tail WebSockets (`ws://origin/tail/{id}`) on the fake's HTTP server: a connection
 * must name the `trace-v1` subprotocol (as Cloudflare's does), waits for the client's filter
 * message, then streams the events scripted for the tail's Worker (`state.tailEvents`, keyed
 * `accountId/script`) one every `intervalMs`, and closes once the tail is deleted.
 */
export function serveTailSockets(
  server: Server,
  state: FakeCloudflareState,
  options: FakeTailSocketOptions = {},
): FakeTailSockets {
  const intervalMs = options.intervalMs ?? 50;
  const wss = new WebSocketServer({ noServer: true });
  let refused = 0;

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const match = /^\/tail\/([^/?]+)$/.exec((req.url ?? '').split('?')[0] ?? '');
    const tail = match ? state.tails.get(match[1] as string) : undefined;
    const protocols = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((p) => p.trim());
    if (!tail || tail.deletedAt) {
      refused++;
      refuse(socket, '404 Not Found');
      return;
    }
    if (!protocols.includes(TAIL_PROTOCOL)) {
      refused++;
      refuse(socket, '400 Bad Request');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      tail.connections++;
      const events = state.tailEvents.get(`${tail.accountId}/${tail.script}`) ?? [];
      let next = 0;
      let timer: NodeJS.Timeout | undefined;
      const tick = () => {
        if (tail.deletedAt) {
          ws.close(1000, 'tail deleted');
          return;
        }
        while (next < events.length) {
          const event = events[next++];
          if (passes(event, tail.filters)) {
            ws.send(JSON.stringify(event));
            tail.eventsSent++;
            break;
          }
        }
      };
      ws.once('message', (data) => {
        try {
          tail.filters = JSON.parse(String(data));
        } catch {
          tail.filters = String(data);
        }
        timer = setInterval(tick, intervalMs);
      });
      ws.on('close', () => clearInterval(timer));
    });
  };
  server.on('upgrade', onUpgrade);
  return {
    refused: () => refused,
    close: () => {
      server.off('upgrade', onUpgrade);
      for (const client of wss.clients) client.terminate();
      wss.close();
    },
  };
}
