import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type { ExecuteToolService, PolicyStore, ToolCaller, ToolDefinitionSource } from '@warden/tools';
import { activeAccounts, definitionsFor, isToolName } from '@warden/tools';
import type { ConnectedAccountService, McpSession } from '@warden/vault';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { callCodeModeTool, codeModeTools } from './mcp-tools.ts';

export interface McpDeps {
  readonly accounts: Pick<ConnectedAccountService, 'list'>;
  readonly policies: Pick<PolicyStore, 'effective'>;
  readonly definitions: ToolDefinitionSource;
  readonly executeTool: ExecuteToolService;
  /** Where approvals are shown (their API address). */
  readonly publicUrl: string;
}

export const SERVER_INFO = { name: 'warden-cloudflare', version: '1.0.0' } as const;

/**
 * One JSON Schema validator for every server of this process. The SDK makes one per `Server`
 * otherwise (a new Ajv instance with its formats), which was most of an MCP call's extra CPU over
 * the same call through REST, since a server lives for one request. It keeps no state of a
 * client, and the server uses it only to check elicitation answers, which Warden never asks for.
 */
const jsonSchemaValidator = new AjvJsonSchemaValidator();

/** Where one MCP server runs: its client's address, and who follows (and may cancel) its tool calls. */
export interface McpServerOptions {
  readonly ip: string | null;
  /**
   * Called as a tool call starts, with its JSON-RPC id; what it returns is called once the call
   * has ended, and may carry a signal that cancels the call (besides the SDK's own).
   */
  readonly onCall?: (requestId: string | number) => {
    readonly signal?: AbortSignal;
    readonly end: () => void;
  };
}

/**
 * A new MCP server per request (streamable HTTP) or per SSE session: never shared
 * between clients. Its tools are the same as /api/v1/tools/scoped for the token's identifier.
 */
export function createMcpServer(session: McpSession, deps: McpDeps, options: McpServerOptions): Server {
  const { ip } = options;
  const server = new Server(SERVER_INFO, {
    jsonSchemaValidator,
    capabilities: { tools: { listChanged: false } },
    instructions:
      'Cloudflare API through Warden. Use cloudflare_search to find operations in the OpenAPI spec, then cloudflare_execute to call them. Your credential is injected server-side; you never see it.',
  });

  function caller(): ToolCaller {
    const client = server.getClientVersion();
    return {
      tenantId: session.tenantId,
      type: 'mcp_token',
      id: session.tokenId,
      clientName: client?.name ?? session.clientName,
      clientVersion: client?.version ?? session.clientVersion,
      ip,
      connectionNames: session.connectionNames,
      expiresAt: session.expiresAt,
    };
  }

  async function tools() {
    const c = caller();
    const accounts = await activeAccounts(deps.accounts, c, session.identifier, null);
    const first = accounts[0];
    if (!first) return [];
    const policy = await deps.policies.effective(session.tenantId, session.identifier);
    return codeModeTools({
      definitions: definitionsFor(deps.definitions, first, policy),
      caller: c,
      identifier: session.identifier,
      executeTool: deps.executeTool,
      publicUrl: deps.publicUrl,
      connectedAccountIds: accounts.map((a) => a.id),
    });
  }

  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: (await tools()).map((t) => ({
      name: t.definition.name,
      description: t.definition.description,
      inputSchema: t.definition.inputSchema as { type: 'object'; [k: string]: unknown },
    })),
  }));

  // A call needs no tool list: the use case resolves the account and applies the policy from
  // the call's cached context, as for REST; listing the tools would read both again.
  // `extra.signal` is aborted when the request's connection closes, and on notifications/cancelled
  // over the SSE transport (one server serves the session). On stateless streamable HTTP the
  // notification is a POST of its own, served by another server instance: `StatelessCalls`
  // (stateless-calls.ts) hands it to the call through `onCall`'s signal, on whichever replica runs it.
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    if (!isToolName(request.params.name)) {
      throw new McpError(ErrorCode.InvalidParams, `unknown tool: ${request.params.name}`);
    }
    const call = options.onCall?.(extra.requestId);
    const signal = call?.signal ? AbortSignal.any([extra.signal, call.signal]) : extra.signal;
    try {
      return await callCodeModeTool(
        {
          caller: caller(),
          identifier: session.identifier,
          executeTool: deps.executeTool,
          publicUrl: deps.publicUrl,
        },
        request.params.name,
        request.params.arguments ?? {},
        signal,
      );
    } finally {
      call?.end();
    }
  });
  return server;
}
