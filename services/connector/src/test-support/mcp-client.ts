import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/**
 * An MCP client of the official SDK connected to `base/mcp` (or the older `base/sse` transport)
 * with a token minted for `identifier` through the REST API (the token joins `secrets`, for the
 * leak assertion).
 */
export async function connectMcpClient(options: {
  readonly base: string;
  readonly apiKey: string;
  readonly identifier: string;
  readonly name: string;
  readonly secrets: { add(secret: string): unknown };
  readonly transport?: 'streamable' | 'sse';
}): Promise<Client> {
  const minted = await fetch(`${options.base}/api/v1/mcp/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${options.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ identifier: options.identifier, expiry: '3600s' }),
  });
  if (minted.status !== 201) throw new Error(`minting an MCP token: ${minted.status} ${await minted.text()}`);
  const { token } = (await minted.json()) as { token: string };
  options.secrets.add(token);
  const client = new Client({ name: options.name, version: '1.0.0' });
  const headers = { Authorization: `Bearer ${token}` };
  await client.connect(
    options.transport === 'sse'
      ? new SSEClientTransport(new URL(`${options.base}/sse`), {
          requestInit: { headers },
          eventSourceInit: {
            fetch: (url, init) => fetch(url, { ...init, headers: { ...init?.headers, ...headers } }),
          },
        })
      : new StreamableHTTPClientTransport(new URL(`${options.base}/mcp`), { requestInit: { headers } }),
  );
  return client;
}
