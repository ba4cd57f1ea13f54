// A project outside the repository using the packed @warden/sdk as its README shows, in plain
// JavaScript so it runs on Node 20 as well as 24. Prints what it saw as one JSON line.
import { WardenApiError, createWardenClient, runAgentLoop, toOpenAiTool } from '@warden/sdk';

const { WARDEN_URL, WARDEN_API_KEY, CLOUDFLARE_TOKEN, IDENTIFIER } = process.env;
const warden = createWardenClient({ baseUrl: WARDEN_URL, apiKey: WARDEN_API_KEY });

const account = await warden.connectedAccounts.create({
  identifier: IDENTIFIER,
  authorization: { type: 'api_token', api_token: CLOUDFLARE_TOKEN },
});
const { tools } = await warden.tools.listScopedTools(IDENTIFIER);
const zones = await warden.tools.executeTool({
  toolName: 'cloudflare_execute',
  identifier: IDENTIFIER,
  params: {
    code: "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.map((z) => z.name)",
  },
});
const failed = await warden.tools.executeTool({
  toolName: 'cloudflare_execute',
  identifier: IDENTIFIER,
  params: { code: "async () => { throw new Error('boom') }" },
});
const mcp = await warden.mcp.createToken({ identifier: IDENTIFIER, expiry: '600s' });

let apiError = null;
try {
  await warden.connectedAccounts.get('ca_missing');
} catch (error) {
  if (!(error instanceof WardenApiError)) throw error;
  apiError = { name: error.name, status: error.status, code: error.code, requestId: typeof error.requestId };
}

// A scripted model: one execute call, then an answer built from its result.
const loop = await runAgentLoop({
  client: warden,
  identifier: IDENTIFIER,
  toTool: toOpenAiTool,
  input: 'Which zones do I have?',
  model: async (messages) => {
    const last = messages.at(-1);
    if (last.role !== 'tool') {
      return {
        type: 'tool_calls',
        toolCalls: [
          {
            id: 'call_1',
            name: 'cloudflare_execute',
            arguments: {
              code: "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.length",
            },
          },
        ],
      };
    }
    return { type: 'text', text: `zones: ${JSON.parse(last.content).data}` };
  },
});

process.stdout.write(
  `${JSON.stringify({
    node: process.versions.node,
    account: { status: account.status, identifier: account.identifier },
    tools: tools.map((t) => t.tool.definition.name),
    zones: zones.data,
    failed: { data: failed.data, message: failed.error?.message },
    mcp: { url: mcp.url, hasCursorConfig: Boolean(mcp.cursor_config.mcpServers.cloudflare) },
    apiError,
    loop: { text: loop.text, turns: loop.turns },
  })}\n`,
);
