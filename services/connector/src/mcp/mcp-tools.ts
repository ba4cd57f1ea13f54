import type { ApprovalView, ExecuteToolService, ToolCaller, ToolDefinition } from '@warden/tools';
import { approvalJson, truncationJson, truncationNote } from '@warden/tools';
import type { TruncationInfo } from '@warden/tools';
import { approvalUrl } from '../http/tools.routes.ts';
import { isWardenError } from '@warden/core';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

/**
 * Every MCP tool is declared through this helper, which makes it state the scopes it
 * needs and how it is audited, so no tool can be added that skips either.
 */
export interface McpToolDeclaration {
  readonly definition: ToolDefinition;
  /** What the session token must allow; Warden's tokens carry `tools:call` for their identifier. */
  readonly scopes: readonly ['tools:call'];
  /** `execution`: recorded in the audit trail by the execute_tool use case, with its upstream requests. */
  readonly audit: 'execution';
  call(args: Record<string, unknown>): Promise<CallToolResult>;
}

export function defineMcpTool(declaration: McpToolDeclaration): McpToolDeclaration {
  return declaration;
}

/** The result (or error) as the first text block; console output, when there is any, as the second. */
function text(value: string, isError = false, logs: readonly string[] = []): CallToolResult {
  return {
    content: [
      { type: 'text', text: value },
      ...(logs.length > 0 ? [{ type: 'text' as const, text: logs.join('\n') }] : []),
    ],
    ...(isError ? { isError: true } : {}),
  };
}

/**
 * A result cut to the result budget says so: as the last line of the logs block (what the agent
 * reads) and in `_meta` (what a client program reads), as REST's `truncated` does.
 */
function cutResult(value: string, logs: readonly string[], truncated: TruncationInfo): CallToolResult {
  const result = text(value, false, [...logs, truncationNote(truncated)]);
  return { ...result, _meta: { 'warden/truncated': truncationJson(truncated) } };
}

/** What the agent is told about writes waiting for a person (and the approval itself, as JSON). */
function approvalText(approval: ApprovalView, publicUrl: string): string {
  const url = approvalUrl(publicUrl, approval.id);
  const json = JSON.stringify(approvalJson(approval, { url }));
  const step = approval.steps?.at(-1);
  const inSteps = step
    ? ` It is applied in steps: step ${step.step} sends ${step.sends.map((w) => `${w.method} ${w.path}`).join(', ')}; once it is applied your code runs again with its real result, and the next write(s) it makes wait for approval as the next step.`
    : approval.dependent
      ? ' A later write uses a value only an earlier one would produce, so the plan cannot be applied as recorded, and this tenant keeps no code to apply it in steps: plan the first write alone.'
      : '';
  switch (approval.status) {
    case 'pending':
      return `${approval.plan.length} write(s) were planned, not sent: a person must approve approval ${approval.id} (${url}) before ${approval.expiresAt.toISOString()}.${inSteps} Call cloudflare_execute with {"code": "", "approval_id": "${approval.id}"} to learn its status.\n${json}`;
    case 'applied':
      return step
        ? `approval ${approval.id} was approved and applied in ${step.step} step(s): every write your code made was sent.\n${json}`
        : `approval ${approval.id} was approved and applied: every planned write was sent.\n${json}`;
    default:
      return `approval ${approval.id} is ${approval.status}${step?.error ? `: ${step.error.message}` : ''}.\n${json}`;
  }
}

/** Runs one Code Mode tool for an MCP session through the same use case as REST. */
export async function callCodeModeTool(
  options: { caller: ToolCaller; identifier: string; executeTool: ExecuteToolService; publicUrl: string },
  name: string,
  args: Record<string, unknown>,
  signal?: AbortSignal,
): Promise<CallToolResult> {
  const { connected_account_id: accountId, ...params } = args;
  if (accountId !== undefined && typeof accountId !== 'string') {
    // As REST refuses it: nothing runs on another account than the one asked for.
    return text(
      `invalid_request: connected_account_id: must be a string (a connected account id, ca_…), not ${accountId === null ? 'null' : typeof accountId}`,
      true,
    );
  }
  try {
    const result = await options.executeTool.run(
      options.caller,
      {
        toolName: name,
        identifier: options.identifier,
        params,
        ...(accountId !== undefined ? { connectedAccountId: accountId } : {}),
      },
      signal ? { signal } : {},
    );
    if (result.error) return text(`${result.error.code}: ${result.error.message}`, true, result.logs);
    if (result.approval) {
      const data = 'approval_id' in params ? '' : `${JSON.stringify(result.data ?? null)}\n`;
      return text(`${data}${approvalText(result.approval, options.publicUrl)}`, false, result.logs);
    }
    const json = JSON.stringify(result.data ?? null);
    return result.truncated ? cutResult(json, result.logs, result.truncated) : text(json, false, result.logs);
  } catch (error) {
    if (isWardenError(error)) return text(`${error.code}: ${error.message}`, true);
    throw error;
  }
}

/** The Code Mode pair for one MCP session, running through the same use case as REST. */
export function codeModeTools(options: {
  definitions: readonly ToolDefinition[];
  caller: ToolCaller;
  identifier: string;
  executeTool: ExecuteToolService;
  publicUrl: string;
  /** Several ACTIVE accounts: the tools take `connected_account_id`. */
  connectedAccountIds: readonly string[];
}): McpToolDeclaration[] {
  const multiple = options.connectedAccountIds.length > 1;
  return options.definitions.map((definition) => {
    const schema = definition.inputSchema as { properties?: Record<string, unknown>; [k: string]: unknown };
    const inputSchema = multiple
      ? {
          ...schema,
          properties: {
            ...schema.properties,
            connected_account_id: {
              type: 'string',
              enum: options.connectedAccountIds,
              description: 'Which of your connected Cloudflare credentials to use.',
            },
          },
        }
      : schema;
    return defineMcpTool({
      definition: { ...definition, inputSchema },
      scopes: ['tools:call'],
      audit: 'execution',
      call: (args) => callCodeModeTool(options, definition.name, args),
    });
  });
}
