import type { AuditStore } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { WardenError, hasPrefix, notFound, systemClock } from '@warden/core';
import type { CloudflareCredential } from '@warden/cloudflare';
import type { ConnectedAccount } from '@warden/vault';
import { resolveCloudflareAccount } from './account-resolution.ts';
import type { CallContextSource, LiveCalls } from './call-context.ts';
import { Execution } from './execution.ts';
import type { ApprovalService } from './approvals.service.ts';
import type { ExecuteToolResult } from './execution.ts';
import { evaluatePolicy } from './policy.ts';
import type { Policy } from './policy.ts';
import type { CodeRunner, R2Request, SpecLookup, TailRequest } from './ports.ts';
import type { ToolCaller, ToolName } from './tool-caller.ts';
import { isToolName } from './tool-caller.ts';
import type { UpstreamGateway } from './upstream-gateway.ts';
import type { R2Gateway } from './r2-gateway.ts';
import type { TailGateway } from './tail-gateway.ts';

export type { TenantToolSettings } from './call-context.ts';
export type { ExecuteToolResult } from './execution.ts';

export const MAX_CODE_LENGTH = 100_000;

export interface ExecuteToolInput {
  readonly toolName: string;
  readonly identifier: string;
  readonly params: unknown;
  readonly connectionName?: string;
  readonly connectedAccountId?: string;
  readonly agentRunId?: string;
}

export interface ExecuteToolOptions {
  /**
   * Aborted when the caller goes away (its HTTP request closed before the answer, an MCP cancel):
   * the sandbox run is stopped, its tails deleted, and the call recorded as `aborted`.
   */
  readonly signal?: AbortSignal;
}

/** The error a call cancelled by its caller records and answers. */
const CALLER_ABORTED = {
  code: 'aborted',
  message: 'cancelled by the caller: its request was closed before the execution ended',
} as const;

export interface ExecuteToolDeps {
  readonly contexts: CallContextSource;
  readonly liveCalls: LiveCalls;
  readonly gateway: UpstreamGateway;
  /** `r2.<op>` in execute; without it the sandbox refuses them. */
  readonly r2?: R2Gateway;
  /** `tail.worker` in execute; without it the sandbox refuses them. */
  readonly tails?: TailGateway;
  readonly runner: CodeRunner;
  readonly spec: SpecLookup;
  readonly audit: AuditStore;
  /**
   * Cloudflare answered 401 with this credential: the owner re-verifies it and marks the account
   * INVALID if Cloudflare no longer accepts it.
   */
  readonly onUnauthorized?: (
    tenantId: string,
    account: ConnectedAccount,
    credential: CloudflareCredential,
  ) => void;
  /** Whether an MCP token may still be used; read when a call must re-check what it holds. */
  readonly isTokenActive?: (tenantId: string, tokenId: string) => Promise<boolean>;
  /** Writes an `approve` rule holds become approvals here; without it they are refused. */
  readonly approvals?: ApprovalService;
  readonly logger: Logger;
  readonly clock?: Clock;
}

interface ParsedParams {
  readonly code: string;
  readonly accountId?: string;
  /** cloudflare_execute only: report this approval's status instead of running code. */
  readonly approvalId?: string;
}

function parseParams(tool: ToolName, params: unknown): ParsedParams {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new WardenError('invalid_request', 'params: must be an object like {"code": "async () => ..."}', {
      field: 'params',
    });
  }
  const p = params as Record<string, unknown>;
  const allowed = tool === 'cloudflare_execute' ? ['code', 'account_id', 'approval_id'] : ['code'];
  for (const key of Object.keys(p)) {
    if (!allowed.includes(key)) {
      throw new WardenError(
        'invalid_request',
        `params.${key}: is not a parameter of ${tool}; it takes ${allowed.join(', ')}`,
        {
          field: `params.${key}`,
        },
      );
    }
  }
  if (p.approval_id !== undefined) {
    if (typeof p.approval_id !== 'string' || !/^apr_[0-9a-z]{20}$/.test(p.approval_id)) {
      throw new WardenError(
        'invalid_request',
        'params.approval_id: must be the id of an approval (apr_…) a previous cloudflare_execute returned',
        { field: 'params.approval_id' },
      );
    }
    return { code: typeof p.code === 'string' ? p.code : '', approvalId: p.approval_id };
  }
  if (typeof p.code !== 'string' || p.code.trim() === '') {
    throw new WardenError(
      'invalid_request',
      'params.code: must be the source of an async arrow function, e.g. "async () => ..."',
      {
        field: 'params.code',
      },
    );
  }
  if (p.code.length > MAX_CODE_LENGTH) {
    throw new WardenError('invalid_request', `params.code: is longer than ${MAX_CODE_LENGTH} characters`, {
      field: 'params.code',
    });
  }
  if (
    p.account_id !== undefined &&
    (typeof p.account_id !== 'string' || !/^[A-Za-z0-9]{1,64}$/.test(p.account_id))
  ) {
    throw new WardenError(
      'invalid_request',
      'params.account_id: must be a Cloudflare account id (32 hex characters)',
      {
        field: 'params.account_id',
      },
    );
  }
  return { code: p.code, ...(typeof p.account_id === 'string' ? { accountId: p.account_id } : {}) };
}

/**
 * Caches the set of operations a policy denies, for search annotation: evaluating
 * thousands of operations per call would dominate a warm search.
 */
function createDeniedCache(spec: SpecLookup, limit = 200) {
  const cache = new Map<string, readonly string[]>();
  // No shortcut for empty policies: credential operations are denied by default.
  return (tenant: Policy, identity: Policy): readonly string[] => {
    const key = `${spec.version}|${JSON.stringify(tenant)}|${JSON.stringify(identity)}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const denied: string[] = [];
    for (const op of spec.operations()) {
      const request = { method: op.method, path: op.pathTemplate, graphqlQuery: false };
      if (!evaluatePolicy(tenant, identity, request).allowed)
        denied.push(`${op.method.toUpperCase()} ${op.pathTemplate}`);
    }
    if (cache.size >= limit) cache.delete(cache.keys().next().value as string);
    cache.set(key, denied);
    return denied;
  };
}

export function createExecuteToolService(deps: ExecuteToolDeps) {
  const clock = deps.clock ?? systemClock;
  const deniedFor = createDeniedCache(deps.spec);
  const executionDeps = {
    contexts: deps.contexts,
    liveCalls: deps.liveCalls,
    gateway: deps.gateway,
    ...(deps.r2 ? { r2: deps.r2 } : {}),
    ...(deps.tails ? { tails: deps.tails } : {}),
    audit: deps.audit,
    clock,
    ...(deps.onUnauthorized ? { onUnauthorized: deps.onUnauthorized } : {}),
    ...(deps.isTokenActive ? { isTokenActive: deps.isTokenActive } : {}),
    ...(deps.approvals ? { approvals: deps.approvals } : {}),
  };

  /**
   * An agent polling the approval its plan asked for (no code runs, nothing reaches Cloudflare):
   * only approvals of the same identifier are visible to it.
   */
  async function approvalStatus(
    caller: ToolCaller,
    identifier: string,
    approvalId: string,
  ): Promise<ExecuteToolResult> {
    if (!deps.approvals) throw notFound('approval');
    const approval = await deps.approvals.get(caller.tenantId, approvalId);
    if (approval.identifier !== identifier) throw notFound('approval');
    return {
      executionId: approval.executionId,
      data: null,
      error: null,
      truncated: null,
      logs: [],
      approval,
    };
  }

  async function run(
    caller: ToolCaller,
    input: ExecuteToolInput,
    options: ExecuteToolOptions = {},
  ): Promise<ExecuteToolResult> {
    if (!isToolName(input.toolName)) {
      throw new WardenError(
        'invalid_request',
        `tool_name: unknown tool '${input.toolName}'; use cloudflare_search or cloudflare_execute`,
        {
          field: 'tool_name',
        },
      );
    }
    const tool: ToolName = input.toolName;
    const params = parseParams(tool, input.params);
    // Checked here, not only at the REST edge: MCP arguments reach this use case unvalidated.
    if (input.connectedAccountId !== undefined && !hasPrefix(input.connectedAccountId, 'ca')) {
      throw new WardenError(
        'invalid_request',
        'connected_account_id: must be the id of one of your connected accounts (ca_…)',
        { field: 'connected_account_id' },
      );
    }
    const target = {
      identifier: input.identifier,
      ...(input.connectionName !== undefined ? { connectionName: input.connectionName } : {}),
      ...(input.connectedAccountId !== undefined ? { connectedAccountId: input.connectedAccountId } : {}),
    };
    if (params.approvalId !== undefined) return approvalStatus(caller, input.identifier, params.approvalId);
    const context = await deps.contexts.load(caller, target);
    const cfAccountId =
      tool === 'cloudflare_execute'
        ? resolveCloudflareAccount(context.account.account, params.accountId)
        : undefined;
    const execution = new Execution(executionDeps, {
      caller,
      tool,
      target,
      code: params.code,
      ...(params.accountId !== undefined ? { accountId: params.accountId } : {}),
      agentRunId: input.agentRunId ?? null,
      context,
    });
    let outcome;
    try {
      if (tool === 'cloudflare_search') {
        outcome = await deps.runner.search(params.code, {
          tenant: caller.tenantId,
          denied: deniedFor(context.policy.tenant, context.policy.identity),
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } else {
        await execution.open();
        outcome = await deps.runner.execute(params.code, {
          tenant: caller.tenantId,
          accountId: cfAccountId,
          upstream: (request, upstreamContext) => execution.upstream(request, upstreamContext.signal),
          ...(deps.r2
            ? { r2: (request: R2Request, c: { signal: AbortSignal }) => execution.r2(request, c.signal) }
            : {}),
          ...(deps.tails
            ? {
                tail: (request: TailRequest, c: { signal: AbortSignal }) => execution.tail(request, c.signal),
              }
            : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        });
      }
      if (!outcome.ok && outcome.error.code === 'aborted') outcome = { ...outcome, error: CALLER_ABORTED };
    } catch (error) {
      execution.release();
      throw error;
    }
    // Written before the result is returned: if the trail cannot be written, the caller gets a 503, not a result.
    return execution.finish(outcome);
  }

  return { run };
}

export type ExecuteToolService = ReturnType<typeof createExecuteToolService>;
