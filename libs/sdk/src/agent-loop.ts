import type { WardenClient } from './client.ts';
import { WardenApiError } from './errors.ts';
import type { ExecuteToolResult, ScopedTool, ToolDefinition } from './types.ts';

/**
 * A provider-agnostic tool-calling loop: Warden's scoped tools go to a model, the
 * model's tool calls go to `execute_tool`, the results go back, until the model answers.
 * The messages are a neutral shape; the `model` function maps them to its provider's
 * (OpenAI chat completions, Anthropic messages, …) and back. See README "SDK and agent loop".
 */

/** A tool call as the model made it. `arguments` is a JSON string (OpenAI) or an object (Anthropic). */
export interface AgentToolCall {
  readonly id: string;
  readonly name: string;
  readonly arguments: string | Readonly<Record<string, unknown>>;
}

export type AgentMessage =
  | { readonly role: 'system'; readonly content: string }
  | { readonly role: 'user'; readonly content: string }
  | {
      readonly role: 'assistant';
      readonly content: string | null;
      readonly toolCalls?: readonly AgentToolCall[];
    }
  | {
      readonly role: 'tool';
      readonly toolCallId: string;
      readonly name: string;
      /** JSON: `{"data": …}` or `{"error": {"code", "message"}}`. */
      readonly content: string;
    };

/** What one model turn produced: a final answer, or tool calls (optionally with some text). */
export type ModelTurn =
  | { readonly type: 'text'; readonly text: string }
  | { readonly type: 'tool_calls'; readonly toolCalls: readonly AgentToolCall[]; readonly text?: string };

export type AgentModel<TTool> = (
  messages: readonly AgentMessage[],
  tools: readonly TTool[],
) => Promise<ModelTurn>;

/** The neutral tool shape (the default `toTool`); also Anthropic's `tools[]` entry. */
export interface AgentTool {
  readonly name: string;
  readonly description: string;
  readonly input_schema: Readonly<Record<string, unknown>>;
}

/** OpenAI chat completions / Responses-style function tool. */
export interface OpenAiFunctionTool {
  readonly type: 'function';
  readonly function: {
    readonly name: string;
    readonly description: string;
    readonly parameters: Readonly<Record<string, unknown>>;
  };
}

export function toAnthropicTool(name: string, definition: ToolDefinition): AgentTool {
  return { name, description: definition.description, input_schema: definition.input_schema };
}

export function toOpenAiTool(name: string, definition: ToolDefinition): OpenAiFunctionTool {
  return {
    type: 'function',
    function: { name, description: definition.description, parameters: definition.input_schema },
  };
}

export interface AgentToolExecution {
  readonly toolCallId: string;
  /** The name the model used. */
  readonly name: string;
  /** The Warden tool it ran, or null when the call never reached Warden (unknown name, bad JSON). */
  readonly toolName: string | null;
  readonly connectionName: string | null;
  readonly params: Readonly<Record<string, unknown>> | null;
  /** Warden's answer, or null when the call never reached Warden. */
  readonly result: ExecuteToolResult | null;
  /** What was fed back to the model. */
  readonly content: string;
}

export interface RunAgentLoopOptions<TTool> {
  readonly client: WardenClient;
  /** Your id for the end user whose vaulted credential the tools use. */
  readonly identifier: string;
  readonly model: AgentModel<TTool>;
  /** The user's request, or a whole conversation to continue. */
  readonly input: string | readonly AgentMessage[];
  /** Put first when `input` is a string. */
  readonly system?: string;
  /** Converts a Warden tool definition to the model's format; default `toAnthropicTool`. */
  readonly toTool?: (name: string, definition: ToolDefinition) => TTool;
  readonly connectionNames?: readonly string[];
  /** Model calls before giving up (default 10). */
  readonly maxTurns?: number;
  /** Recorded in Warden's audit trail with every tool call; default a random UUID. */
  readonly agentRunId?: string;
  /** Called after each tool call, e.g. to log or stream progress. */
  readonly onToolResult?: (execution: AgentToolExecution) => void;
  readonly signal?: AbortSignal;
}

export interface AgentLoopResult {
  readonly text: string;
  readonly messages: readonly AgentMessage[];
  readonly executions: readonly AgentToolExecution[];
  readonly turns: number;
  readonly agentRunId: string;
}

export class AgentLoopError extends Error {
  override readonly name = 'AgentLoopError';
  readonly code: 'no_tools' | 'max_turns';
  constructor(code: 'no_tools' | 'max_turns', message: string) {
    super(message);
    this.code = code;
  }
}

interface Route {
  readonly toolName: string;
  readonly connectionName: string;
  readonly connectedAccountId: string;
}

/** Model-facing tool names must be unique and match `^[A-Za-z0-9_-]{1,64}$` for most providers. */
function modelToolName(tool: ScopedTool, clash: boolean): string {
  const base = tool.tool.definition.name;
  if (!clash) return base;
  const suffix = tool.connection_name.replace(/[^A-Za-z0-9_-]+/g, '_');
  return `${base}__${suffix}`.slice(0, 64);
}

function parseArguments(raw: AgentToolCall['arguments']): Record<string, unknown> | string {
  if (typeof raw !== 'string') return { ...raw };
  try {
    const parsed: unknown = JSON.parse(raw === '' ? '{}' : raw);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
    return 'the arguments must be a JSON object';
  } catch (error) {
    return `the arguments are not valid JSON: ${(error as Error).message}`;
  }
}

function feedback(payload: { data: unknown } | { error: { code: string; message: string } }): string {
  return JSON.stringify(payload);
}

/**
 * Runs the loop. Tool calls of one turn run one after another, in the model's order
 * (an execute may change what the next one sees). Tool failures and bad arguments are
 * fed back for the model to correct; a Warden 400 too (its message names the field and
 * the fix, e.g. which `account_id` to pass). Any other Warden error rejects the loop.
 */
export async function runAgentLoop<TTool = AgentTool>(
  options: RunAgentLoopOptions<TTool>,
): Promise<AgentLoopResult> {
  const { client, identifier } = options;
  const toTool = (options.toTool ?? toAnthropicTool) as (name: string, definition: ToolDefinition) => TTool;
  const maxTurns = options.maxTurns ?? 10;
  const agentRunId = options.agentRunId ?? globalThis.crypto.randomUUID();
  const call = options.signal ? { signal: options.signal } : undefined;

  const scoped: ScopedTool[] = [];
  for await (const tool of client.tools.listAllScopedTools(
    identifier,
    options.connectionNames ? { filter: { connectionNames: options.connectionNames } } : {},
    call,
  )) {
    scoped.push(tool);
  }
  if (scoped.length === 0) {
    throw new AgentLoopError(
      'no_tools',
      `no tools for identifier '${identifier}': it has no ACTIVE connected account${options.connectionNames ? ' for those connections' : ''}`,
    );
  }
  const counts = new Map<string, number>();
  for (const t of scoped) {
    counts.set(t.tool.definition.name, (counts.get(t.tool.definition.name) ?? 0) + 1);
  }
  const routes = new Map<string, Route>();
  const tools: TTool[] = [];
  for (const t of scoped) {
    const name = modelToolName(t, (counts.get(t.tool.definition.name) ?? 0) > 1);
    routes.set(name, {
      toolName: t.tool.definition.name,
      connectionName: t.connection_name,
      connectedAccountId: t.connected_account_id,
    });
    tools.push(toTool(name, t.tool.definition));
  }

  const messages: AgentMessage[] =
    typeof options.input === 'string'
      ? [
          ...(options.system ? [{ role: 'system' as const, content: options.system }] : []),
          { role: 'user', content: options.input },
        ]
      : [...options.input];
  const executions: AgentToolExecution[] = [];

  for (let turn = 1; turn <= maxTurns; turn++) {
    options.signal?.throwIfAborted();
    const answer = await options.model(messages, tools);
    if (answer.type === 'text' || answer.toolCalls.length === 0) {
      const text = answer.type === 'text' ? answer.text : (answer.text ?? '');
      messages.push({ role: 'assistant', content: text });
      return { text, messages, executions, turns: turn, agentRunId };
    }
    messages.push({ role: 'assistant', content: answer.text ?? null, toolCalls: answer.toolCalls });
    for (const toolCall of answer.toolCalls) {
      const execution = await executeCall(toolCall);
      executions.push(execution);
      messages.push({
        role: 'tool',
        toolCallId: toolCall.id,
        name: toolCall.name,
        content: execution.content,
      });
      options.onToolResult?.(execution);
    }
  }
  throw new AgentLoopError('max_turns', `the model did not answer within ${maxTurns} turns`);

  async function executeCall(toolCall: AgentToolCall): Promise<AgentToolExecution> {
    const base = { toolCallId: toolCall.id, name: toolCall.name };
    const route = routes.get(toolCall.name);
    if (!route) {
      const content = feedback({
        error: {
          code: 'unknown_tool',
          message: `no tool '${toolCall.name}'; available: ${[...routes.keys()].join(', ')}`,
        },
      });
      return { ...base, toolName: null, connectionName: null, params: null, result: null, content };
    }
    const params = parseArguments(toolCall.arguments);
    if (typeof params === 'string') {
      const content = feedback({ error: { code: 'invalid_arguments', message: params } });
      return {
        ...base,
        toolName: route.toolName,
        connectionName: route.connectionName,
        params: null,
        result: null,
        content,
      };
    }
    const located = { ...base, toolName: route.toolName, connectionName: route.connectionName, params };
    try {
      const result = await client.tools.executeTool(
        {
          toolName: route.toolName,
          identifier,
          params,
          connectionName: route.connectionName,
          connectedAccountId: route.connectedAccountId,
          agentRunId,
        },
        call,
      );
      const content = result.error
        ? feedback({ error: result.error })
        : feedback({ data: result.data ?? null });
      return { ...located, result, content };
    } catch (error) {
      if (error instanceof WardenApiError && error.status === 400) {
        // Warden's 400 messages already name the field and the fix.
        const content = feedback({ error: { code: error.code, message: error.message } });
        return { ...located, result: null, content };
      }
      throw error;
    }
  }
}
