import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/**
 * An MCP client of the official SDK connected to `base/mcp` with a token minted for
 * `identifier` through the REST API (the token joins `secrets`, for the leak assertion).
 */
export async function connectMcpClient(options: {
  readonly base: string;
  readonly apiKey: string;
  readonly identifier: string;
  readonly name: string;
  readonly secrets: { add(secret: string): unknown };
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
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${options.base}/mcp`), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    }),
  );
  return client;
}
