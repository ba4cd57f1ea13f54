import type { AuditRecordInput, AuditStore } from '@warden/audit';
import { sha256Hex } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { WardenError, isWardenError, newId, systemClock, unavailable } from '@warden/core';
import type { CloudflareClient, CloudflareCredential, CloudflareResponse } from '@warden/cloudflare';
import type { BudgetSpec, RateBudget } from '@warden/ratelimit';
import { rateLimitedError } from '@warden/ratelimit';
import type { ConnectedAccount, ConnectedAccountService } from '@warden/vault';
import { resolveAccount, resolveCloudflareAccount, upstreamPrincipal } from './account-resolution.ts';
import { evaluatePolicy, isGraphqlPath, isGraphqlQueryDocument, policyRefusal } from './policy.ts';
import type { Policy } from './policy.ts';
import type {
  CodeRunner,
  SandboxOutcome,
  SpecLookup,
  TruncationInfo,
  UpstreamRequest,
  UpstreamResponse,
} from './ports.ts';
import type { ToolCaller, ToolName } from './tool-caller.ts';
import { auditCaller, isToolName } from './tool-caller.ts';

export const MAX_CODE_LENGTH = 100_000;

export interface TenantToolSettings {
  readonly budget: BudgetSpec;
  readonly retentionDays: number;
  /** Store the submitted code in the audit trail (its SHA-256 is always stored). */
  readonly captureCode: boolean;
}

export interface ExecuteToolInput {
  readonly toolName: string;
  readonly identifier: string;
  readonly params: unknown;
  readonly connectionName?: string;
  readonly connectedAccountId?: string;
  readonly agentRunId?: string;
}

export interface ExecuteToolResult {
  readonly executionId: string;
  readonly data: unknown;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly truncated: TruncationInfo | null;
  /** What the code wrote with console.log, capped. */
  readonly logs: readonly string[];
}

export interface ExecuteToolDeps {
  readonly accounts: Pick<ConnectedAccountService, 'openable'>;
  /** The tenant's and identity's policies and the tenant's settings, in one read. */
  readonly context: (
    tenantId: string,
    identifier: string,
  ) => Promise<{ policy: { tenant: Policy; identity: Policy }; settings: TenantToolSettings }>;
  readonly runner: CodeRunner;
  readonly spec: SpecLookup;
  readonly cloudflare: CloudflareClient;
  readonly budget: RateBudget;
  readonly audit: AuditStore;
  /**
   * Cloudflare answered 401 with this credential: the caller re-verifies it and marks the
   * account INVALID if Cloudflare no longer accepts it (an endpoint a token may not use
   * also answers 401, so one 401 alone proves nothing).
   */
  readonly onUnauthorized?: (
    tenantId: string,
    account: ConnectedAccount,
    credential: CloudflareCredential,
  ) => void;
  /** True while the account may still be used; checked before every upstream request. */
  readonly isAccountActive: (tenantId: string, connectedAccountId: string) => Promise<boolean>;
  readonly logger: Logger;
  readonly clock?: Clock;
}

interface ParsedParams {
  readonly code: string;
  readonly accountId?: string;
}

function parseParams(tool: ToolName, params: unknown): ParsedParams {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new WardenError('invalid_request', 'params: must be an object like {"code": "async () => ..."}', {
      field: 'params',
    });
  }
  const p = params as Record<string, unknown>;
  const allowed = tool === 'cloudflare_execute' ? ['code', 'account_id'] : ['code'];
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

function toSandboxResponse(response: CloudflareResponse): UpstreamResponse {
  return {
    success: response.success,
    status: response.status,
    result: response.result,
    errors: response.errors,
    messages: response.messages,
    ...(response.resultInfo !== undefined ? { result_info: response.resultInfo } : {}),
  };
}

function outcomeOf(code: string): AuditRecordInput['outcome'] {
  if (code === 'policy_denied') return 'refused';
  if (code === 'rate_limited') return 'rate_limited';
  if (code === 'timeout' || code === 'upstream_timeout') return 'timeout';
  return 'error';
}

/**
 * Caches the set of operations a policy denies, for search annotation: evaluating
 * thousands of operations per call would dominate a warm search.
 */
function createDeniedCache(spec: SpecLookup, limit = 200) {
  const cache = new Map<string, readonly string[]>();
  const none: readonly string[] = [];
  return (tenant: Policy, identity: Policy): readonly string[] => {
    if (
      !tenant.rules &&
      !identity.rules &&
      !tenant.read_only &&
      !identity.read_only &&
      !tenant.deny_writes_by_default &&
      !identity.deny_writes_by_default
    ) {
      return none;
    }
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

  async function run(caller: ToolCaller, input: ExecuteToolInput): Promise<ExecuteToolResult> {
    if (!isToolName(input.toolName)) {
      throw new WardenError(
        'invalid_request',
        `tool_name: unknown tool '${input.toolName}'; use cloudflare_search or cloudflare_execute`,
        {
          field: 'tool_name',
        },
      );
    }
    const tool = input.toolName;
    const params = parseParams(tool, input.params);
    const [{ account, open }, { policy, settings }] = await Promise.all([
      resolveAccount(deps.accounts, caller, input),
      deps.context(caller.tenantId, input.identifier),
    ]);
    const cfAccountId =
      tool === 'cloudflare_execute' ? resolveCloudflareAccount(account, params.accountId) : undefined;
    // No unaudited call: the audit write path is probed while the sandbox starts; every
    // upstream request waits for it, and no result is returned unless it succeeded.
    const probe = deps.audit.probe(caller.tenantId, { retentionDays: settings.retentionDays });
    probe.catch(() => {});

    const executionId = newId('exe');
    const started = clock.now();
    const records: AuditRecordInput[] = [];
    const base = {
      execution_id: executionId,
      identifier: input.identifier,
      caller: auditCaller(caller),
      agent_run_id: input.agentRunId ?? null,
      tool_name: tool,
      connected_account_id: account.id,
    };

    let outcome: SandboxOutcome;
    if (tool === 'cloudflare_search') {
      outcome = await deps.runner.search(params.code, {
        denied: deniedFor(policy.tenant, policy.identity),
        tenant: caller.tenantId,
      });
      await probe;
    } else {
      const credential = await open();
      outcome = await deps.runner.execute(params.code, {
        tenant: caller.tenantId,
        accountId: cfAccountId,
        upstream: (request, context) =>
          upstreamCall(
            caller,
            account,
            credential,
            policy,
            settings,
            { ...request, signal: context.signal },
            records,
            base,
            probe,
          ),
      });
      await probe;
    }

    const error = outcome.ok ? null : outcome.error;
    const resultJson = outcome.ok ? JSON.stringify(outcome.result ?? null) : '';
    records.push({
      ...base,
      occurred_at: started.toISOString(),
      kind: 'tool_call',
      action: tool === 'cloudflare_search' ? 'tool.search' : 'tool.execute',
      outcome: error ? outcomeOf(error.code) : 'success',
      upstream: null,
      error,
      duration_ms: clock.now().getTime() - started.getTime(),
      request_bytes: Buffer.byteLength(params.code),
      response_bytes: outcome.ok ? Buffer.byteLength(resultJson) : null,
      code_sha256: sha256Hex(params.code),
      code: settings.captureCode ? params.code : null,
    });
    // Written before the result is returned: if the trail cannot be written, the caller gets a 503, not a result.
    await deps.audit.append(caller.tenantId, records, { retentionDays: settings.retentionDays });
    return {
      executionId,
      data: outcome.ok ? (outcome.result ?? null) : null,
      error,
      truncated: outcome.ok ? (outcome.truncated ?? null) : null,
      logs: outcome.logs,
    };
  }

  async function upstreamCall(
    caller: ToolCaller,
    account: ConnectedAccount,
    credential: CloudflareCredential,
    policy: { tenant: Policy; identity: Policy },
    settings: TenantToolSettings,
    request: UpstreamRequest & { signal?: AbortSignal },
    records: AuditRecordInput[],
    base: Pick<
      AuditRecordInput,
      'execution_id' | 'identifier' | 'caller' | 'agent_run_id' | 'tool_name' | 'connected_account_id'
    >,
    auditReady: Promise<void>,
  ): Promise<UpstreamResponse> {
    // Nothing reaches Cloudflare before the audit write path has proved it works.
    await auditReady;
    const started = clock.now();
    const operation = deps.spec.findOperation(request.method, request.path);
    const requestBytes =
      request.rawBody !== undefined
        ? Buffer.byteLength(request.rawBody)
        : request.body !== undefined
          ? Buffer.byteLength(JSON.stringify(request.body))
          : 0;
    const record = (
      fields: Pick<AuditRecordInput, 'outcome' | 'error'> & {
        status: number | null;
        cfRay: string | null;
        responseBytes: number | null;
      },
    ) => {
      records.push({
        ...base,
        occurred_at: started.toISOString(),
        kind: 'upstream_request',
        action: 'cloudflare.request',
        outcome: fields.outcome,
        upstream: {
          method: request.method,
          path_template: operation?.pathTemplate ?? null,
          path: request.path,
          status: fields.status,
          cf_ray: fields.cfRay,
        },
        error: fields.error,
        duration_ms: clock.now().getTime() - started.getTime(),
        request_bytes: requestBytes,
        response_bytes: fields.responseBytes,
        code_sha256: null,
        code: null,
      });
    };
    const refuse = (error: WardenError): never => {
      record({
        outcome: outcomeOf(error.code),
        error: { code: error.code, message: error.message },
        status: null,
        cfRay: null,
        responseBytes: null,
      });
      throw error;
    };

    const graphqlQuery =
      request.method === 'POST' && isGraphqlPath(request.path)
        ? isGraphqlQueryDocument(request.body)
        : undefined;
    const decision = evaluatePolicy(policy.tenant, policy.identity, {
      method: request.method,
      path: request.path,
      ...(graphqlQuery !== undefined ? { graphqlQuery } : {}),
    });
    if (!decision.allowed) refuse(policyRefusal(decision, request));

    // Offboarding or revocation while the code runs stops its next request, on every
    // replica; the account check and the budget take go to different stores, in parallel.
    const principal = upstreamPrincipal(account);
    const [active, take] = await Promise.all([
      deps.isAccountActive(caller.tenantId, account.id).catch((error: unknown) => {
        throw unavailable('the database', error);
      }),
      deps.budget.take(principal, settings.budget),
    ]);
    if (!active) {
      refuse(
        new WardenError('forbidden', 'the connected account was revoked while this execution was running'),
      );
    }
    if (!take.allowed) refuse(rateLimitedError(take));

    let response: CloudflareResponse;
    try {
      response = await deps.cloudflare.send(credential, request);
    } catch (error) {
      const wrapped = isWardenError(error)
        ? error
        : new WardenError('upstream_error', 'Cloudflare request failed');
      return refuse(wrapped);
    }
    const common = { status: response.status, cfRay: response.cfRay, responseBytes: response.responseBytes };
    if (response.status === 401) deps.onUnauthorized?.(caller.tenantId, account, credential);
    if (response.status === 429) {
      const wait = response.retryAfterSeconds ?? 60;
      await deps.budget.block(principal, wait);
      const error = new WardenError(
        'rate_limited',
        `Cloudflare rate-limited this user; retry after ${wait} s`,
        {
          retryAfterSeconds: wait,
        },
      );
      record({ ...common, outcome: 'rate_limited', error: { code: error.code, message: error.message } });
      throw error;
    }
    if (response.status === 403) {
      const needed = operation?.permissions ?? [];
      const cfReason = response.errors.map((e) => e.message).join('; ') || 'forbidden';
      const error = new WardenError(
        'forbidden',
        needed.length > 0
          ? `Cloudflare refused ${request.method} ${operation?.pathTemplate ?? request.path} (${cfReason}): the token needs one of these permissions: ${needed.join(', ')}. Grant it in the Cloudflare dashboard (My Profile > API Tokens) and retry.`
          : `Cloudflare refused ${request.method} ${request.path} (${cfReason}): the token lacks a permission this operation needs.`,
        { permissions: needed },
      );
      record({ ...common, outcome: 'error', error: { code: error.code, message: error.message } });
      throw error;
    }
    record({
      ...common,
      outcome: response.success ? 'success' : 'error',
      error: response.success
        ? null
        : {
            code: `http_${response.status}`,
            message: response.errors
              .map((e) => e.message)
              .join('; ')
              .slice(0, 500),
          },
    });
    return toSandboxResponse(response);
  }

  return { run };
}

export type ExecuteToolService = ReturnType<typeof createExecuteToolService>;
