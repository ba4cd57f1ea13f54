import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { startFakeCloudflare } from '@warden/testing';
import type { FakeCloudflare } from '@warden/testing';
import { WardenApiError, createWardenClient, runAgentLoop, toOpenAiTool } from '@warden/sdk';
import type { AgentMessage, AgentModel, ModelTurn, OpenAiFunctionTool, WardenClient } from '@warden/sdk';
import openapiTS, { COMMENT_HEADER, astToString } from 'openapi-typescript';
import type { OpenAPI3 } from 'openapi-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { wardenOpenApiDocument } from './openapi-dump.ts';
import { REPO_ROOT, SPEC_PATH } from './test-support/paths.ts';
import { startTestApp } from './test-support/test-app.ts';
import type { TestApp } from './test-support/test-app.ts';

// The SDK's own tests live here because libraries may not import the service
// (module boundaries); the SDK itself is used exactly as an npm consumer would.

/** Array.fromAsync, which the project's es2024 lib does not declare. */
async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const GENERATED = path.join(REPO_ROOT, 'libs/sdk/src/generated/warden-api.ts');

describe('@warden/sdk generated types', () => {
  it('match the OpenAPI document the service serves', async () => {
    const document = await wardenOpenApiDocument();
    // What `openapi-typescript` (the CLI run by `npm run sdk:generate`) writes, with its defaults.
    const fresh = `${COMMENT_HEADER}${astToString(await openapiTS(document as unknown as OpenAPI3, { silent: true }))}`;
    const committed = readFileSync(GENERATED, 'utf8');
    if (fresh === committed) return;
    const committedLines = committed.split('\n');
    const freshLines = fresh.split('\n');
    const line = freshLines.findIndex((text, i) => text !== committedLines[i]);
    const at = line === -1 ? committedLines.length : line;
    expect.fail(
      `libs/sdk/src/generated/warden-api.ts is stale: run \`npm run sdk:generate\` and commit the result ` +
        `(first difference at line ${at + 1}: committed ${JSON.stringify(committedLines[at] ?? '<end>')}, ` +
        `served ${JSON.stringify(freshLines[at] ?? '<end>')})`,
    );
  });
});

const PERMISSIONS = [
  'com.cloudflare.api.user.read',
  '#organization:read',
  '#zone:read',
  '#dns_records:read',
  '#dns_records:edit',
];

describe('@warden/sdk against the real service over HTTP', () => {
  let cf: FakeCloudflare;
  let t: TestApp;
  let baseUrl: string;
  let apiKey: string;
  let client: WardenClient;
  let alice: { id: string };
  let acme: { id: string; name: string };

  beforeAll(async () => {
    cf = await startFakeCloudflare({ specPath: SPEC_PATH });
    t = await startTestApp({ CLOUDFLARE_API_BASE: cf.url });
    ({ apiKey } = await t.createTenant('SDK tenant'));
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    baseUrl = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
    client = createWardenClient({ baseUrl, apiKey });
    alice = cf.state.createUser({ email: 'alice@example.com' });
    acme = cf.state.createAccount({ name: 'Acme', members: [alice.id] });
    cf.state.createZone({ accountId: acme.id, name: 'sdk-example.com' });
  });
  afterAll(async () => {
    await t?.close();
    await cf?.close();
  });

  function cloudflareToken(): string {
    const token = cf.state.createUserToken({
      userId: alice.id,
      permissions: PERMISSIONS,
      accounts: [acme.id],
    });
    t.secrets.add(token.value);
    return token.value;
  }

  async function connect(identifier: string) {
    return client.connectedAccounts.create({
      identifier,
      authorization: { type: 'api_token', api_token: cloudflareToken() },
    });
  }

  it('manages connected accounts: create, get, list (paged), rotate, delete', async () => {
    const created = await connect('sdk-alice');
    expect(created).toMatchObject({
      id: expect.stringMatching(/^ca_/),
      identifier: 'sdk-alice',
      connection_name: 'cloudflare',
      status: 'ACTIVE',
      token_kind: 'user',
      cloudflare: { user_id: alice.id, account_ids: [acme.id] },
    });
    expect(await client.connectedAccounts.get(created.id)).toEqual(created);

    await connect('sdk-bob');
    await connect('sdk-carol');
    const firstPage = await client.connectedAccounts.list({ pageSize: 1 });
    expect(firstPage.connected_accounts).toHaveLength(1);
    expect(firstPage.next_page_token).toEqual(expect.any(String));
    const all = await collect(client.connectedAccounts.listAll({ pageSize: 1 }));
    expect(all.map((a) => a.identifier).sort()).toEqual(['sdk-alice', 'sdk-bob', 'sdk-carol']);
    const onlyBob = await client.connectedAccounts.list({ identifier: 'sdk-bob' });
    expect(onlyBob.connected_accounts.map((a) => a.identifier)).toEqual(['sdk-bob']);

    const rotated = await client.connectedAccounts.rotate(created.id, {
      type: 'api_token',
      api_token: cloudflareToken(),
    });
    expect(rotated.id).toBe(created.id);
    expect(rotated.cloudflare.token_id).not.toBe(created.cloudflare.token_id);

    const keyed = await client.connectedAccounts.setR2AccessKey(created.id, {
      access_key_id: 'k'.repeat(32),
      secret_access_key: 's'.repeat(64),
    });
    expect(keyed.r2_access_key?.access_key_id).toBe('k'.repeat(32));
    expect(JSON.stringify(keyed)).not.toContain('s'.repeat(64));
    expect((await client.connectedAccounts.removeR2AccessKey(created.id)).r2_access_key).toBeNull();

    const carol = all.find((a) => a.identifier === 'sdk-carol');
    await client.connectedAccounts.delete(carol?.id ?? '');
    expect((await client.connectedAccounts.get(carol?.id ?? '')).status).toBe('REVOKED');
  });

  it('lists scoped tools, with a connection filter and page by page', async () => {
    const account = await connect('sdk-tools');
    const page = await client.tools.listScopedTools('sdk-tools');
    expect(page.tools.map((x) => x.tool.definition.name)).toEqual([
      'cloudflare_search',
      'cloudflare_execute',
    ]);
    expect(page.tools[0]).toMatchObject({ connection_name: 'cloudflare', connected_account_id: account.id });
    expect(page.tools[1]?.tool.definition.input_schema).toMatchObject({ type: 'object', required: ['code'] });
    expect(page.next_page_token).toBeNull();

    const filtered = await client.tools.listScopedTools('sdk-tools', {
      filter: { connectionNames: ['cloudflare'] },
    });
    expect(filtered.tools).toHaveLength(2);
    const paged = await client.tools.listScopedTools('sdk-tools', { pageSize: 1 });
    expect(paged.tools).toHaveLength(1);
    const walked = await collect(client.tools.listAllScopedTools('sdk-tools', { pageSize: 1 }));
    expect(walked.map((x) => x.tool.definition.name)).toEqual(['cloudflare_search', 'cloudflare_execute']);
    expect((await client.tools.listScopedTools('sdk-nobody')).tools).toEqual([]);
  });

  it('executes search and execute; a tool failure resolves with `error`', async () => {
    await connect('sdk-exec');
    const search = await client.tools.executeTool({
      toolName: 'cloudflare_search',
      identifier: 'sdk-exec',
      params: { code: "async () => Object.keys(spec.paths['/zones'])" },
    });
    expect(search).toMatchObject({ data: expect.arrayContaining(['get']), execution_id: expect.any(String) });
    expect(search.error).toBeUndefined();

    const zones = await client.tools.executeTool({
      toolName: 'cloudflare_execute',
      identifier: 'sdk-exec',
      params: {
        code: "async () => (await cloudflare.request({ method: 'GET', path: '/zones' })).result.map((z) => z.name)",
      },
      agentRunId: 'sdk-run-1',
    });
    expect(zones.data).toEqual(['sdk-example.com']);

    const failed = await client.tools.executeTool({
      toolName: 'cloudflare_execute',
      identifier: 'sdk-exec',
      params: { code: "async () => { throw new Error('boom') }" },
    });
    expect(failed.data).toBeNull();
    expect(failed.error).toMatchObject({
      code: expect.any(String),
      message: expect.stringContaining('boom'),
    });
  });

  it('throws WardenApiError for caller errors, never with the API key in it', async () => {
    const wrongKey = `${apiKey.slice(0, -4)}beef`;
    const stranger = createWardenClient({ baseUrl, apiKey: wrongKey });
    const unauthorized = await stranger.tools.listScopedTools('sdk-alice').catch((e: unknown) => e);
    expect(unauthorized).toBeInstanceOf(WardenApiError);
    expect(unauthorized).toMatchObject({ status: 401, requestId: expect.any(String) });
    const serialized = `${String(unauthorized)} ${JSON.stringify(unauthorized)} ${(unauthorized as Error).stack}`;
    expect(serialized).not.toContain(wrongKey);
    expect(serialized).not.toContain(apiKey);

    const badPageSize = await client.tools
      .listScopedTools('sdk-alice', { pageSize: 1000 })
      .catch((e: unknown) => e);
    expect(badPageSize).toMatchObject({ status: 400, code: 'invalid_request', field: 'page_size' });

    const badParams = await client.tools
      .executeTool({ toolName: 'cloudflare_search', identifier: 'sdk-alice', params: {} })
      .catch((e: unknown) => e);
    expect(badParams).toMatchObject({ status: 400, field: expect.stringContaining('code') });

    const malformed = await client.connectedAccounts
      .create({ identifier: 'sdk-mallory', authorization: { type: 'api_token', api_token: 'not a token' } })
      .catch((e: unknown) => e);
    expect(malformed).toMatchObject({ status: 400, field: 'authorization.api_token' });
    // Well-formed but unknown to Cloudflare: refused after verification, nothing stored.
    const unknownToken = randomBytes(30).toString('base64url');
    t.secrets.add(unknownToken);
    const refused = await client.connectedAccounts
      .create({ identifier: 'sdk-mallory', authorization: { type: 'api_token', api_token: unknownToken } })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 400, code: 'invalid_credential' });
    expect(String(refused)).not.toContain(unknownToken);
    expect((await client.connectedAccounts.list({ identifier: 'sdk-mallory' })).connected_accounts).toEqual(
      [],
    );

    const missing = await client.connectedAccounts.get('ca_missing').catch((e: unknown) => e);
    expect(missing).toMatchObject({ status: 404, code: 'not_found' });
  });

  it('mints an MCP token with a ready cursor config', async () => {
    await connect('sdk-mcp');
    const minted = await client.mcp.createToken({ identifier: 'sdk-mcp', expiry: '600s' });
    t.secrets.add(minted.token);
    expect(minted.url).toMatch(/\/mcp$/);
    expect(Date.parse(minted.expires_at) - Date.now()).toBeGreaterThan(500_000);
    expect(minted.cursor_config.mcpServers.cloudflare).toEqual({
      url: minted.url,
      headers: { Authorization: `Bearer ${minted.token}` },
    });
    const unknownConnection = await client.mcp
      .createToken({ identifier: 'sdk-mcp', connectionNames: ['nope'] })
      .catch((e: unknown) => e);
    expect(unknownConnection).toMatchObject({ status: 400, field: 'connection_names' });
  });

  it('runs the agent loop with a scripted model: search, execute, answer; both calls audited', async () => {
    await connect('sdk-agent');
    const seen: { messages: AgentMessage[]; tools: OpenAiFunctionTool[] }[] = [];
    const lastToolResult = (messages: readonly AgentMessage[]) => {
      const last = messages.at(-1);
      if (last?.role !== 'tool') throw new Error('the loop did not feed the tool result back');
      return JSON.parse(last.content) as { data?: unknown; error?: unknown };
    };
    // Stands in for an LLM: each turn depends on what the previous tool call returned.
    const model: AgentModel<OpenAiFunctionTool> = async (messages, tools): Promise<ModelTurn> => {
      seen.push({ messages: [...messages], tools: [...tools] });
      switch (seen.length) {
        case 1:
          return {
            type: 'tool_calls',
            toolCalls: [
              {
                id: 'call_1',
                name: 'cloudflare_search',
                arguments: JSON.stringify({
                  code: "async () => Object.keys(spec.paths).filter((p) => p === '/zones')",
                }),
              },
            ],
          };
        case 2: {
          const [listPath] = lastToolResult(messages).data as string[];
          return {
            type: 'tool_calls',
            text: 'Listing the zones.',
            toolCalls: [
              {
                id: 'call_2',
                name: 'cloudflare_execute',
                arguments: {
                  code: `async () => (await cloudflare.request({ method: 'GET', path: '${listPath}' })).result.map((z) => z.name)`,
                },
              },
            ],
          };
        }
        default: {
          const names = lastToolResult(messages).data as string[];
          return { type: 'text', text: `You have ${names.length} zone: ${names.join(', ')}.` };
        }
      }
    };

    const result = await runAgentLoop({
      client,
      identifier: 'sdk-agent',
      model,
      input: 'Which zones do I have?',
      system: 'You operate Cloudflare for the user.',
      toTool: toOpenAiTool,
    });

    expect(result.text).toBe('You have 1 zone: sdk-example.com.');
    expect(result.turns).toBe(3);
    expect(seen[0]?.tools.map((x) => x.function.name)).toEqual(['cloudflare_search', 'cloudflare_execute']);
    expect(seen[0]?.tools[0]).toMatchObject({
      type: 'function',
      function: { parameters: { type: 'object' } },
    });
    expect(seen[0]?.messages).toEqual([
      { role: 'system', content: 'You operate Cloudflare for the user.' },
      { role: 'user', content: 'Which zones do I have?' },
    ]);
    expect(result.messages.map((m) => m.role)).toEqual([
      'system',
      'user',
      'assistant',
      'tool',
      'assistant',
      'tool',
      'assistant',
    ]);
    expect(result.executions.map((e) => [e.toolName, e.result?.error])).toEqual([
      ['cloudflare_search', undefined],
      ['cloudflare_execute', undefined],
    ]);

    const events = await collect(client.audit.listAllEvents({ identifier: 'sdk-agent', kind: 'tool_call' }));
    const ofRun = events.filter((e) => e.agent_run_id === result.agentRunId);
    expect(ofRun.map((e) => [e.tool_name, e.outcome])).toEqual([
      ['cloudflare_search', 'success'],
      ['cloudflare_execute', 'success'],
    ]);
    expect(ofRun.map((e) => e.execution_id)).toEqual(result.executions.map((e) => e.result?.execution_id));
  });
});
