import { randomBytes } from 'node:crypto';
import contentType from 'content-type';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { MAX_BATCH_SIZE } from '@modelcontextprotocol/sdk/server/requestBody.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { JSONRPCMessageSchema } from '@modelcontextprotocol/sdk/types.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@warden/core';
import type { McpSession, McpTokenService } from '@warden/vault';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { EventBus } from '../event-bus.ts';
import { bearerToken } from '../http/auth.ts';
import type { McpConnections } from './mcp-connections.ts';
import type { McpDeps } from './mcp-server.ts';
import { createMcpServer } from './mcp-server.ts';
import { invalidToolCall, isBodyParseError, messagesOf } from './json-rpc-body.ts';
import type { BodyMessage } from './json-rpc-body.ts';
import { StatelessCalls } from './stateless-calls.ts';

const SSE_CHANNEL = 'mcp:sse';
/** The replica holding an SSE stream says it took a message forwarded to it (by `ackId`). */
const SSE_ACK_CHANNEL = 'mcp:sse-ack';
/**
 * A message for a stream of another replica: that replica takes it only within this time of its
 * forwarding (by the wall clock), and the forwarding replica waits `SSE_ACK_MARGIN_MS` longer for
 * the acknowledgement, so a 404 ("not taken") means the message was not delivered: a client
 * re-sending it on a new stream does not run a tool call twice. Replicas' clocks must agree to
 * well within the margin (NTP).
 */
const SSE_TAKE_WITHIN_MS = 1_000;
const SSE_ACK_MARGIN_MS = 500;
const MINTED_TOKEN_PREFIX = 'wdn_mcp_';
const SSE_KEEPALIVE_MS = 25_000;
/** Query parameters a client might wrongly use to carry a token; refused so tokens never sit in URLs and logs. */
const TOKEN_QUERY_PARAMS = ['token', 'access_token', 'api_key', 'apikey', 'key', 'auth', 'authorization'];

interface SseForward {
  readonly sessionId: string;
  readonly tokenId: string;
  readonly message: unknown;
  /** Answered on `SSE_ACK_CHANNEL` by the replica that holds the stream. */
  readonly ackId?: string;
  /** Epoch ms after which the holding replica must not take it (the sender has given up by then). */
  readonly takeBy?: number;
}

function jsonRpcError(
  reply: FastifyReply,
  status: number,
  message: string,
  options: { readonly headers?: Record<string, string>; readonly code?: number } = {},
) {
  return reply
    .code(status)
    .headers(options.headers ?? {})
    .send({ jsonrpc: '2.0', error: { code: options.code ?? -32000, message }, id: null });
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route only answers its method with a 405 of its own: other 405s do not name it. */
    refusesMethod?: boolean;
  }
}

/**
 * A `POST /messages` body as the SSE transport (the SDK's `handlePostMessage`) reads it: a strict
 * `Content-Type` of `application/json`, a body sent as a JSON string parsed again, and one
 * JSON-RPC message by the SDK's schema (no batches). A replica forwarding a message to the stream
 * of another one reads it so, so both answer a client alike.
 */
function sseMessageOf(request: FastifyRequest): { message: JSONRPCMessage } | { refusal: string } {
  try {
    const { type } = contentType.parse(request.headers['content-type'] ?? '');
    if (type !== 'application/json') return { refusal: `Unsupported content-type: ${type}` };
  } catch (error) {
    return { refusal: `Invalid content-type: ${error instanceof Error ? error.message : String(error)}` };
  }
  let body: unknown = request.body;
  try {
    if (typeof body === 'string') body = JSON.parse(body);
  } catch {
    return { refusal: 'Invalid message: the body is not JSON' };
  }
  // Forwarded as sent: the stream's transport checks it again (and keeps what the schema strips).
  return JSONRPCMessageSchema.safeParse(body).success
    ? { message: body as JSONRPCMessage }
    : { refusal: 'Invalid message: not a JSON-RPC message' };
}

/** A client session id as Warden hands them out: `mcs_` and 128 random bits. */
const CLIENT_SESSION = /^mcs_[A-Za-z0-9_-]{22}$/;

/**
 * The client session a stateless `POST /mcp` belongs to, '' for none; a request that
 * `initializing` (it carries `initialize`) gets a new one. The transport keeps no
 * state, but each client is handed an `Mcp-Session-Id` at `initialize` (as the protocol lets a
 * server do), which it sends with every later request: it tells apart the calls of clients
 * sharing one token, which number their requests alike, so a cancellation reaches only its
 * own client's call. The id is the client's alone to scope its own calls: it grants nothing.
 */
function clientSessionOf(request: FastifyRequest, reply: FastifyReply, initializing: boolean): string {
  if (initializing) {
    const id = `mcs_${randomBytes(16).toString('base64url')}`;
    reply.raw.setHeader('mcp-session-id', id);
    return id;
  }
  const sent = request.headers['mcp-session-id'];
  return typeof sent === 'string' && CLIENT_SESSION.test(sent) ? sent : '';
}

export interface McpRouteDeps extends McpDeps {
  readonly mcpTokens: McpTokenService;
  /** OAuth access tokens from MCP sign-in, beside minted tokens. */
  readonly oauth: { authenticate(token: string): Promise<McpSession | null> };
  readonly bus: EventBus;
  readonly connections: McpConnections;
  readonly allowedOrigins: readonly string[];
  readonly logger: Logger;
}

/** An SSE stream of this replica: its transport, its token's session and its tool calls in flight. */
interface SseSession {
  readonly transport: SSEServerTransport;
  readonly session: McpSession;
  calls: number;
  readonly end: () => void;
}

export async function mcpRoutes(app: FastifyInstance, deps: McpRouteDeps): Promise<void> {
  const audience = `${deps.publicUrl}/mcp`;
  const resourceMetadata = `${deps.publicUrl}/.well-known/oauth-protected-resource/mcp`;
  const ownOrigin = new URL(deps.publicUrl).origin;
  const sseSessions = new Map<string, SseSession>();
  /** Set when the app starts closing: SSE streams end once their tool calls have answered. */
  let closing = false;

  /** Stateless tool calls running on this replica, and their cancellation from any replica. */
  const statelessCalls = await StatelessCalls.start(deps.bus, deps.logger);

  /** Messages forwarded to another replica's stream, waiting for it to say it took them. */
  const awaitingAck = new Map<string, () => void>();
  await deps.bus.subscribe(SSE_ACK_CHANNEL, (message) => {
    const { ackId } = message as { ackId?: unknown };
    if (typeof ackId === 'string') awaitingAck.get(ackId)?.();
  });
  await deps.bus.subscribe(SSE_CHANNEL, (message) => {
    const forward = message as SseForward;
    const local = sseSessions.get(forward.sessionId);
    // Not taken: another token's message, a stream ending with its replica (its own POSTs are
    // 503 then), or one its sender has given up on (it answered 404).
    if (!local || local.session.tokenId !== forward.tokenId || closing) return;
    if (forward.takeBy !== undefined && Date.now() > forward.takeBy) return;
    local.transport.handleMessage(forward.message).then(
      () => {
        if (!forward.ackId) return;
        deps.bus.publish(SSE_ACK_CHANNEL, { ackId: forward.ackId }).catch((error: unknown) => {
          deps.logger.warn({ err: error }, 'MCP: an SSE message taken could not be acknowledged');
        });
      },
      () => {},
    );
  });

  /** Hands a message to the replica holding its stream; false if none took it in time. */
  async function forwardToStream(forward: Omit<SseForward, 'ackId' | 'takeBy'>): Promise<boolean> {
    const ackId = randomBytes(12).toString('base64url');
    let timer: NodeJS.Timeout | undefined;
    const taken = new Promise<boolean>((resolve) => {
      awaitingAck.set(ackId, () => resolve(true));
      // Decided after the I/O already waiting is read: with this event loop late, an
      // acknowledgement that arrived in time is not taken for none.
      timer = setTimeout(() => setImmediate(() => resolve(false)), SSE_TAKE_WITHIN_MS + SSE_ACK_MARGIN_MS);
    });
    try {
      await deps.bus.publish(SSE_CHANNEL, { ...forward, ackId, takeBy: Date.now() + SSE_TAKE_WITHIN_MS });
      return await taken;
    } finally {
      clearTimeout(timer);
      awaitingAck.delete(ackId);
    }
  }

  /** Origin (DNS rebinding), no token in the URL, and a live token bound to this endpoint. */
  async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<McpSession | null> {
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== ownOrigin && !deps.allowedOrigins.includes(origin)) {
      await jsonRpcError(
        reply,
        403,
        `origin ${origin} is not allowed; set MCP_ALLOWED_ORIGINS to allow a browser client`,
      );
      return null;
    }
    const query = request.query as Record<string, unknown>;
    if (TOKEN_QUERY_PARAMS.some((p) => p in query)) {
      await jsonRpcError(
        reply,
        400,
        'tokens are not accepted in the URL; send `Authorization: Bearer <token>`',
      );
      return null;
    }
    const token = bearerToken(request);
    const session = token
      ? token.startsWith(MINTED_TOKEN_PREFIX)
        ? await deps.mcpTokens.authenticate(token, audience)
        : await deps.oauth.authenticate(token)
      : null;
    if (!session) {
      // RFC 9728: the challenge leads an OAuth client to Warden's authorization server.
      const invalid = token ? ', error="invalid_token"' : '';
      await jsonRpcError(
        reply,
        401,
        'missing, expired or revoked MCP token; sign in with OAuth or mint one with POST /api/v1/mcp/tokens',
        {
          headers: {
            'www-authenticate': `Bearer realm="warden", resource_metadata="${resourceMetadata}", scope="mcp"${invalid}`,
          },
        },
      );
      return null;
    }
    return session;
  }

  /**
   * Stateless requests carry no clientInfo after `initialize`; keep it with the token so
   * later calls (on any replica) are attributed to the client in the audit trail.
   */
  async function rememberClient(session: McpSession, initializations: readonly BodyMessage[]): Promise<void> {
    for (const m of initializations) {
      const info = m?.params?.clientInfo as { name?: unknown; version?: unknown } | undefined;
      if (info && typeof info.name === 'string' && typeof info.version === 'string') {
        await deps.mcpTokens.recordClient(session.tokenId, { name: info.name, version: info.version });
      }
    }
  }

  const notAllowed = async (_request: FastifyRequest, reply: FastifyReply) =>
    jsonRpcError(reply, 405, 'this endpoint is stateless: use POST (or GET /sse for the older transport)', {
      headers: { allow: 'POST' },
    });

  /** Sessions of `POST /mcp` requests, authenticated before their body is read. */
  const authenticated = new WeakMap<FastifyRequest, McpSession>();

  app.post(
    '/mcp',
    {
      schema: { hide: true },
      // Before the body is parsed: a request without a valid token gets the sign-in challenge
      // whatever its body holds.
      onRequest: async (request, reply) => {
        const session = await authenticate(request, reply);
        if (!session) return reply;
        authenticated.set(request, session);
        return undefined;
      },
      // Refusals of the body are JSON-RPC errors, which a client reads as such: one that is not
      // JSON is the parse error; another media type or an oversized body keep their HTTP status.
      errorHandler: (error, _request, reply) => {
        if (isBodyParseError(error)) {
          return jsonRpcError(reply, 400, 'Parse error: the body is not valid JSON', { code: -32700 });
        }
        const code = (error as { code?: unknown }).code;
        if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
          return jsonRpcError(
            reply,
            415,
            'Unsupported Media Type: send the body as JSON with Content-Type: application/json',
          );
        }
        if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
          return jsonRpcError(
            reply,
            413,
            'Payload Too Large: the body exceeds the limit this server takes (BODY_LIMIT_BYTES)',
          );
        }
        throw error;
      },
    },
    async (request, reply) => {
      const session = authenticated.get(request);
      if (!session) throw new Error('POST /mcp: no session after authentication');
      // JSON-RPC 2.0: an empty batch is an invalid request (the SDK answered 202, no body).
      if (Array.isArray(request.body) && request.body.length === 0) {
        return jsonRpcError(reply, 400, 'Invalid Request: the batch is empty; send at least one message', {
          code: -32600,
        });
      }
      // The SDK refuses a larger batch whole; nothing of it is acted on here either.
      if (Array.isArray(request.body) && request.body.length > MAX_BATCH_SIZE) {
        return jsonRpcError(reply, 400, `Invalid Request: Batch must not exceed ${MAX_BATCH_SIZE} messages`, {
          code: -32600,
        });
      }
      // Malformed tools/call params are the client's error, named (the SDK answers them -32603).
      const refused = invalidToolCall(request.body);
      if (refused) return reply.code(200).send(refused);
      // An OAuth session is named by its client's registration; a minted token learns it here.
      const initializations = messagesOf(request.body).filter((m) => m?.method === 'initialize');
      if (session.tokenId.startsWith('mcp_')) await rememberClient(session, initializations);
      // A stateless server knows no call but its own: cancellations go to the calls of the same
      // token and client session.
      const clientSession = clientSessionOf(request, reply, initializations.length > 0);
      await statelessCalls.cancelFrom(session.tokenId, clientSession, request.body);
      reply.hijack();
      const server = createMcpServer(session, deps, {
        ip: request.ip,
        onCall: (requestId) => statelessCalls.track(session.tokenId, clientSession, requestId),
      });
      const transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: undefined,
        enableJsonResponse: true,
      });
      const release = deps.connections.add(
        { tenantId: session.tenantId, identifier: session.identifier, tokenId: session.tokenId },
        () => {
          void transport.close();
          // Only a request still running is cut: once its response is out, the socket may already
          // carry the client's next request on keep-alive, which is not this token's to end.
          if (!reply.raw.writableFinished) reply.raw.destroy();
        },
      );
      reply.raw.on('finish', release);
      reply.raw.on('close', () => {
        release();
        void transport.close();
        void server.close();
      });
      try {
        await server.connect(transport);
        await transport.handleRequest(request.raw, reply.raw, request.body);
      } catch (error) {
        deps.logger.error({ err: error }, 'MCP request failed');
        if (!reply.raw.headersSent) {
          reply.raw.writeHead(500, { 'content-type': 'application/json' });
          reply.raw.end(
            JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'internal error' }, id: null }),
          );
        }
      }
      return reply;
    },
  );
  // Answered by the route (a JSON-RPC body), and left out of the methods other refusals name.
  app.get('/mcp', { schema: { hide: true }, config: { refusesMethod: true } }, notAllowed);
  app.delete('/mcp', { schema: { hide: true }, config: { refusesMethod: true } }, notAllowed);

  app.get('/sse', { schema: { hide: true } }, async (request, reply) => {
    const session = await authenticate(request, reply);
    if (!session) return reply;
    reply.hijack();
    const transport = new SSEServerTransport('/messages', reply.raw);
    const sse: SseSession = { transport, session, calls: 0, end: () => reply.raw.end() };
    const server = createMcpServer(session, deps, {
      ip: request.ip,
      onCall: () => {
        sse.calls++;
        return {
          end: () => {
            sse.calls--;
            // After the answer is written (the SDK sends it once the handler has returned).
            if (closing && sse.calls === 0) setImmediate(sse.end);
          },
        };
      },
    });
    sseSessions.set(transport.sessionId, sse);
    const keepalive = setInterval(() => reply.raw.write(': keepalive\n\n'), SSE_KEEPALIVE_MS);
    const release = deps.connections.add(
      { tenantId: session.tenantId, identifier: session.identifier, tokenId: session.tokenId },
      () => {
        void transport.close();
        reply.raw.end();
      },
    );
    reply.raw.on('close', () => {
      clearInterval(keepalive);
      release();
      sseSessions.delete(transport.sessionId);
      void server.close();
    });
    await server.connect(transport);
    return reply;
  });

  app.post('/messages', { schema: { hide: true } }, async (request, reply) => {
    const session = await authenticate(request, reply);
    if (!session) return reply;
    const sessionId = (request.query as { sessionId?: unknown }).sessionId;
    if (typeof sessionId !== 'string' || sessionId.length > 100) {
      return jsonRpcError(reply, 400, 'sessionId: missing; use the endpoint the /sse stream announced');
    }
    const local = sseSessions.get(sessionId);
    if (local && local.session.tokenId === session.tokenId) {
      reply.hijack();
      await local.transport.handlePostMessage(request.raw, reply.raw, request.body);
      return reply;
    }
    // Refused here as the stream's own transport would refuse it, and forwarded as it would read it.
    const read = sseMessageOf(request);
    if ('refusal' in read) return reply.code(400).type('text/plain').send(read.refusal);
    // The stream lives on another replica, or on none any more (it ended, its replica stopped):
    // the message goes to the one that holds it, or the client learns to open a new stream.
    // Another token's message for a stream of this replica goes the same way (and is not taken
    // there): its answer and its delay do not tell a live session from an unknown one.
    const taken = await forwardToStream({ sessionId, tokenId: session.tokenId, message: read.message });
    if (!taken) {
      return jsonRpcError(
        reply,
        404,
        'unknown session: its /sse stream has ended; open a new one (GET /sse)',
      );
    }
    return reply.code(202).send('Accepted');
  });

  // An SSE stream never ends on its own, and the server's close waits for every connection: the
  // streams end as closing starts, each once its tool calls in flight have answered (their
  // clients reconnect to another replica; new messages are refused with 503 meanwhile).
  app.addHook('preClose', async () => {
    closing = true;
    for (const sse of sseSessions.values()) if (sse.calls === 0) sse.end();
  });
  app.addHook('onClose', async () => {
    deps.connections.closeWhere(() => true);
  });
}
