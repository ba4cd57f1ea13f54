import { describe, expect, it } from 'vitest';
import { AgentLoopError, runAgentLoop, toAnthropicTool } from './agent-loop.ts';
import type { AgentMessage, AgentTool, ModelTurn } from './agent-loop.ts';
import { createWardenClient } from './client.ts';
import { WardenApiError } from './errors.ts';

// The loop's own decisions against a stubbed Warden; the end-to-end run with a scripted
// model against the real service is in services/connector/src/sdk.integration.test.ts.

const definition = (name: string) => ({
  name,
  description: `${name} tool`,
  input_schema: { type: 'object', properties: { code: { type: 'string' } }, required: ['code'] },
});

function scopedTool(name: string, connection: string, accountId: string) {
  return {
    connection_name: connection,
    connected_account_id: accountId,
    tool: { definition: definition(name) },
  };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

function warden(
  tools: unknown[],
  execute: (body: Record<string, unknown>) => Response = () => json(200, { data: 1, execution_id: 'exe_1' }),
) {
  const executed: Record<string, unknown>[] = [];
  const client = createWardenClient({
    baseUrl: 'http://warden.test',
    apiKey: 'test-key',
    fetch: async (request) => {
      if (new URL(request.url).pathname === '/api/v1/tools/scoped') {
        return json(200, { tools, next_page_token: null });
      }
      const body = (await request.json()) as Record<string, unknown>;
      executed.push(body);
      return execute(body);
    },
  });
  return { client, executed };
}

/** A model that plays back turns and records what it was given. */
function scripted(turns: ModelTurn[]) {
  const calls: { messages: AgentMessage[]; tools: AgentTool[] }[] = [];
  const model = async (messages: readonly AgentMessage[], tools: readonly AgentTool[]) => {
    calls.push({ messages: [...messages], tools: [...tools] });
    const turn = turns[calls.length - 1];
    if (!turn) throw new Error('script exhausted');
    return turn;
  };
  return { model, calls };
}

const lastTool = (messages: readonly AgentMessage[]) => {
  const last = messages.at(-1);
  return last?.role === 'tool' ? (JSON.parse(last.content) as Record<string, unknown>) : null;
};

describe('runAgentLoop', () => {
  it('feeds unknown tools, bad JSON and Warden 400s back to the model instead of failing', async () => {
    const { client, executed } = warden([scopedTool('cloudflare_execute', 'cloudflare', 'ca_1')], (body) =>
      (body.params as Record<string, unknown>).account_id
        ? json(200, { data: ['example.com'], execution_id: 'exe_2' })
        : json(400, {
            error: {
              code: 'invalid_request',
              message: 'params.account_id: pass one of acc_1 (Acme)',
              field: 'params.account_id',
            },
          }),
    );
    const { model, calls } = scripted([
      {
        type: 'tool_calls',
        toolCalls: [
          { id: 'c1', name: 'cloudflare_deploy', arguments: '{}' },
          { id: 'c2', name: 'cloudflare_execute', arguments: '{"code": ' },
          { id: 'c3', name: 'cloudflare_execute', arguments: '{"code": "async () => 1"}' },
        ],
      },
      {
        type: 'tool_calls',
        toolCalls: [
          { id: 'c4', name: 'cloudflare_execute', arguments: { code: 'async () => 1', account_id: 'acc_1' } },
        ],
      },
      { type: 'text', text: 'done' },
    ]);
    const result = await runAgentLoop({
      client,
      identifier: 'alice',
      model,
      input: 'go',
      agentRunId: 'run-7',
    });

    expect(result.text).toBe('done');
    const fedBack = calls[1]?.messages.filter((m) => m.role === 'tool').map((m) => JSON.parse(m.content));
    expect(fedBack).toEqual([
      {
        error: {
          code: 'unknown_tool',
          message: "no tool 'cloudflare_deploy'; available: cloudflare_execute",
        },
      },
      { error: { code: 'invalid_arguments', message: expect.stringContaining('not valid JSON') } },
      { error: { code: 'invalid_request', message: 'params.account_id: pass one of acc_1 (Acme)' } },
    ]);
    expect(lastTool(calls[2]?.messages ?? [])).toEqual({ data: ['example.com'] });
    expect(executed).toEqual([
      expect.objectContaining({ params: { code: 'async () => 1' }, agent_run_id: 'run-7' }),
      {
        tool_name: 'cloudflare_execute',
        identifier: 'alice',
        params: { code: 'async () => 1', account_id: 'acc_1' },
        connection_name: 'cloudflare',
        connected_account_id: 'ca_1',
        agent_run_id: 'run-7',
      },
    ]);
  });

  it('gives each connection its own tool names when two share a definition', async () => {
    const { client, executed } = warden([
      scopedTool('cloudflare_execute', 'cloudflare', 'ca_prod'),
      scopedTool('cloudflare_execute', 'cloudflare staging', 'ca_staging'),
    ]);
    const { model, calls } = scripted([
      {
        type: 'tool_calls',
        toolCalls: [{ id: 'c1', name: 'cloudflare_execute__cloudflare_staging', arguments: { code: 'x' } }],
      },
      { type: 'text', text: 'ok' },
    ]);
    await runAgentLoop({ client, identifier: 'alice', model, input: 'go', toTool: toAnthropicTool });
    expect(calls[0]?.tools.map((x) => x.name)).toEqual([
      'cloudflare_execute__cloudflare',
      'cloudflare_execute__cloudflare_staging',
    ]);
    expect(executed[0]).toMatchObject({
      connection_name: 'cloudflare staging',
      connected_account_id: 'ca_staging',
    });
  });

  it('rejects on Warden errors that are not the model’s to fix, on no tools and after maxTurns', async () => {
    const unauthorized = warden([scopedTool('cloudflare_search', 'cloudflare', 'ca_1')], () =>
      json(401, { error: { code: 'unauthenticated', message: 'invalid API key' } }),
    );
    const callSearch: ModelTurn = {
      type: 'tool_calls',
      toolCalls: [{ id: 'c1', name: 'cloudflare_search', arguments: { code: 'x' } }],
    };
    await expect(
      runAgentLoop({
        client: unauthorized.client,
        identifier: 'a',
        model: scripted([callSearch]).model,
        input: 'go',
      }),
    ).rejects.toBeInstanceOf(WardenApiError);

    const none = warden([]);
    await expect(
      runAgentLoop({ client: none.client, identifier: 'a', model: scripted([]).model, input: 'go' }),
    ).rejects.toMatchObject({ name: 'AgentLoopError', code: 'no_tools' });

    const looping = warden([scopedTool('cloudflare_search', 'cloudflare', 'ca_1')]);
    const forever = scripted([callSearch, callSearch, callSearch]);
    const error = await runAgentLoop({
      client: looping.client,
      identifier: 'a',
      model: forever.model,
      input: 'go',
      maxTurns: 2,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentLoopError);
    expect(error).toMatchObject({ code: 'max_turns' });
    expect(looping.executed).toHaveLength(2);
  });
});
