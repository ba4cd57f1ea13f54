// Type-checked against the packed package's declarations in a project outside the repository
// (and against the sources in the repository): the types are real, not `any`.
import { WardenApiError, createWardenClient } from '@warden/sdk';
import type { ExecuteToolResult, McpToken, ScopedToolsPage, WardenClient } from '@warden/sdk';

export async function typed(baseUrl: string, apiKey: string): Promise<string> {
  const warden: WardenClient = createWardenClient({ baseUrl, apiKey });
  const page: ScopedToolsPage = await warden.tools.listScopedTools('alice@acme.com', { pageSize: 50 });
  const run: ExecuteToolResult = await warden.tools.executeTool({
    toolName: 'cloudflare_search',
    identifier: 'alice@acme.com',
    params: { code: 'async () => 1' },
  });
  const token: McpToken = await warden.mcp.createToken({ identifier: 'alice@acme.com', expiry: '7d' });
  // @ts-expect-error toolName is required
  await warden.tools.executeTool({ identifier: 'alice@acme.com', params: {} });
  // @ts-expect-error the page has no such member
  void page.nonexistent;
  try {
    await warden.connectedAccounts.get('ca_x');
  } catch (error) {
    if (error instanceof WardenApiError) return `${error.status} ${error.code} ${error.field ?? ''}`;
  }
  return `${page.tools.length} ${run.execution_id} ${token.cursor_config.mcpServers.cloudflare?.url ?? ''}`;
}
