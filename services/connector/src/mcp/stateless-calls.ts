import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@warden/core';
import type { EventBus } from '../event-bus.ts';
import { messagesOf } from './json-rpc-body.ts';

/** `notifications/cancelled` of a stateless request, for the replica that runs the call. */
const CANCEL_CHANNEL = 'mcp:cancel';

/** The running calls one stateless request cancels, for every replica. */
interface CancelForward {
  readonly tokenId: string;
  /** The client's session (`Mcp-Session-Id`), '' for a client that sends none. */
  readonly clientSession: string;
  readonly requestIds: ReadonlyArray<string | number>;
}

/** A request id as a key: its type and its value ("number:7" is not "string:7"). */
function idKey(id: string | number): string {
  return `${typeof id}:${String(id)}`;
}

/**
 * A stateless tool call as its client names it: only notifications of that token and of that
 * client's session reach it (two clients sharing a token each number their requests from 0).
 */
function callKey(tokenId: string, clientSession: string, requestId: string | number): string {
  return `${tokenId}\u0000${clientSession}\u0000${idKey(requestId)}`;
}

/**
 * The request ids a stateless `POST /mcp` body cancels (`notifications/cancelled`, alone or in a
 * batch), each once; none when the SDK will refuse the body (a message that is not JSON-RPC).
 */
function cancelledRequestIds(body: unknown): Array<string | number> {
  const messages = messagesOf(body);
  const ids = new Map<string, string | number>();
  for (const m of messages) {
    const id = m?.method === 'notifications/cancelled' ? m.params?.requestId : undefined;
    if ((typeof id === 'string' && id.length <= 200) || (typeof id === 'number' && Number.isFinite(id))) {
      ids.set(idKey(id), id);
    }
  }
  // Checked only when there is something to cancel: most bodies carry no cancellation.
  if (ids.size === 0 || !messages.every((m) => JSONRPCMessageSchema.safeParse(m).success)) return [];
  return [...ids.values()];
}

/**
 * The tool calls of stateless streamable HTTP running on this replica, by token and JSON-RPC id,
 * and their cancellation. The SDK hands each `POST /mcp` to a fresh server that knows no call but
 * its own, so a `notifications/cancelled` (a POST of its own) is read here, before the SDK, and goes
 * to the call of that id of the same token and client session (`Mcp-Session-Id`, which Warden
 * hands each client at `initialize`): on this replica at once, on the others over the bus (one
 * message a request). Another token, or another client of the same token, reaches nothing.
 */
export class StatelessCalls {
  readonly #running = new Map<string, Set<AbortController>>();
  readonly #bus: EventBus;
  readonly #logger: Logger;

  private constructor(bus: EventBus, logger: Logger) {
    this.#bus = bus;
    this.#logger = logger;
  }

  /** Subscribes to the cancellations other replicas forward. */
  static async start(bus: EventBus, logger: Logger): Promise<StatelessCalls> {
    const calls = new StatelessCalls(bus, logger);
    await bus.subscribe(CANCEL_CHANNEL, (message) => calls.#cancelHere(message as CancelForward));
    return calls;
  }

  /**
   * A call of `tokenId` in `clientSession` starts: its signal aborts on a cancellation of
   * `requestId` from that session; `end` once it has ended.
   */
  track(
    tokenId: string,
    clientSession: string,
    requestId: string | number,
  ): { signal: AbortSignal; end: () => void } {
    const key = callKey(tokenId, clientSession, requestId);
    const controller = new AbortController();
    const calls = this.#running.get(key) ?? new Set<AbortController>();
    this.#running.set(key, calls.add(controller));
    return {
      signal: controller.signal,
      end: () => {
        calls.delete(controller);
        if (calls.size === 0) this.#running.delete(key);
      },
    };
  }

  /**
   * Cancels the calls a request body of `tokenId` from `clientSession` names in
   * `notifications/cancelled`, on every replica.
   */
  async cancelFrom(tokenId: string, clientSession: string, body: unknown): Promise<void> {
    const requestIds = cancelledRequestIds(body);
    if (requestIds.length === 0) return;
    const cancel: CancelForward = { tokenId, clientSession, requestIds };
    this.#cancelHere(cancel);
    await this.#bus.publish(CANCEL_CHANNEL, cancel).catch((error: unknown) => {
      this.#logger.warn({ err: error }, 'MCP cancellation not forwarded to other replicas');
    });
  }

  #cancelHere({ tokenId, clientSession, requestIds }: CancelForward): void {
    // A replica of the release before sessions sends none: it meant the token's calls of no session.
    const scope = typeof clientSession === 'string' ? clientSession : '';
    for (const requestId of requestIds) {
      for (const controller of this.#running.get(callKey(tokenId, scope, requestId)) ?? []) {
        controller.abort(new Error('cancelled by the MCP client (notifications/cancelled)'));
      }
    }
  }
}
