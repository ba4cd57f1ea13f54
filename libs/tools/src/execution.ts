import { AuditJournal, outcomeOf, sha256Hex, toolCallRecord } from '@warden/audit';
import type { AuditStore, AuditSubject } from '@warden/audit';
import type { Clock } from '@warden/core';
import { WardenError, isWardenError, newId } from '@warden/core';
import type { CloudflareCredential, CloudflareResponse, R2Credentials } from '@warden/cloudflare';
import { cloudflareRateLimited } from '@warden/ratelimit';
import type { ConnectedAccount } from '@warden/vault';
import { upstreamPrincipal } from './account-resolution.ts';
import type {
  CallContext,
  CallContextSource,
  CallTarget,
  LiveCallHandle,
  LiveCalls,
} from './call-context.ts';
import type {
  R2Request,
  SandboxOutcome,
  TailRequest,
  TruncationInfo,
  UpstreamRequest,
  UpstreamResponse,
} from './ports.ts';
import type { R2Gateway } from './r2-gateway.ts';
import type { TailGateway } from './tail-gateway.ts';
import type { ToolCaller, ToolName } from './tool-caller.ts';
import { auditCaller } from './tool-caller.ts';
import { PENDING_APPROVAL_RESPONSE } from './upstream-gateway.ts';
import type { UpstreamGateway, UpstreamParty } from './upstream-gateway.ts';
import type { ApprovalService, ApprovalView, ExecutionPlan } from './approvals.service.ts';

export interface ExecuteToolResult {
  readonly executionId: string;
  readonly data: unknown;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly truncated: TruncationInfo | null;
  /** What the code wrote with console.log, capped. */
  readonly logs: readonly string[];
  /** The writes policy held for a person's approval, when there were any. */
  readonly approval: ApprovalView | null;
}

/** What an execution needs from the service that starts it. */
export interface ExecutionDeps {
  readonly contexts: CallContextSource;
  readonly liveCalls: LiveCalls;
  readonly gateway: UpstreamGateway;
  /** Where `r2.<op>` calls go; without it they are refused. */
  readonly r2?: R2Gateway;
  /** Where `tail.worker` calls go; without it they are refused. */
  readonly tails?: TailGateway;
  readonly audit: AuditStore;
  readonly clock: Clock;
  /**
   * Cloudflare answered 401 with this credential: the owner re-verifies it and marks the account
   * INVALID if Cloudflare no longer accepts it (an endpoint a token may not use also answers
   * 401, so one 401 alone proves nothing).
   */
  readonly onUnauthorized?: (
    tenantId: string,
    account: ConnectedAccount,
    credential: CloudflareCredential,
  ) => void;
  /** Whether an MCP token may still be used; read when a call must re-check what it holds. */
  readonly isTokenActive?: (tenantId: string, tokenId: string) => Promise<boolean>;
  /** Where held writes become approvals; without it, a write an approve rule holds is refused. */
  readonly approvals?: ApprovalService;
}

export interface ExecutionStart {
  readonly caller: ToolCaller;
  readonly tool: ToolName;
  readonly target: CallTarget;
  readonly code: string;
  /** The `account_id` the code was given, if any (kept with a plan applied in steps). */
  readonly accountId?: string;
  readonly agentRunId: string | null;
  readonly context: CallContext;
  /**
   * A re-run of approved code (apply in steps): its writes go to this plan, every one of them,
   * and none is sent; without it, an execution's held writes go to a plan of its own.
   */
  readonly replay?: ExecutionPlan;
}

/** How often a running tail checks that the call still holds its token, account and identity. */
const TAIL_REVOCATION_CHECK_MS = 500;

function toSandboxResponse(response: CloudflareResponse): UpstreamResponse {
  // A write held for approval: the code sees it planned and goes on.
  if (response === PENDING_APPROVAL_RESPONSE) {
    return { success: true, status: 202, result: null, errors: [], messages: [], pending_approval: true };
  }
  return {
    success: response.success,
    status: response.status,
    result: response.result,
    errors: response.errors,
    messages: response.messages,
    ...(response.resultInfo !== undefined ? { result_info: response.resultInfo } : {}),
  };
}

/**
 * One tool call in flight: who calls, for which identity and account, under which policy and
 * settings, and the audit journal of everything it does. It is the only way agent code reaches
 * Cloudflare (`upstream`), and it writes the call's own record when it ends (`finish`).
 */
export class Execution {
  readonly id = newId('exe');
  readonly #deps: ExecutionDeps;
  readonly #start: ExecutionStart;
  readonly #startedAt: number;
  readonly #subject: AuditSubject;
  readonly #journal: AuditJournal;
  readonly #live: LiveCallHandle;
  #context: CallContext;
  #credential: Promise<CloudflareCredential> | null = null;
  #r2AccessKey: Promise<R2Credentials | null> | null = null;
  /** The writes an approve rule held, in order (only where approvals can be asked for). */
  readonly #plan: ExecutionPlan | null;
  /** Tails still running or being deleted; `finish` waits for them. */
  readonly #tails = new Set<Promise<unknown>>();
  /** Budget settlements of answered requests still under way; `finish` waits for them. */
  readonly #settling = new Set<Promise<void>>();
  /** Set when the call ends (`finish`, `release`): no tail starts after it. */
  #ended = false;

  constructor(deps: ExecutionDeps, start: ExecutionStart) {
    this.#deps = deps;
    this.#start = start;
    this.#context = start.context;
    this.#plan = start.replay ?? (deps.approvals ? deps.approvals.newPlan() : null);
    this.#startedAt = deps.clock.now().getTime();
    const account = start.context.account.account;
    this.#subject = {
      caller: auditCaller(start.caller),
      identifier: start.target.identifier,
      executionId: this.id,
      agentRunId: start.agentRunId,
      toolName: start.tool,
      connectedAccountId: account.id,
    };
    this.#journal = new AuditJournal(deps.audit, start.caller.tenantId, start.context.settings.retentionDays);
    this.#live = deps.liveCalls.register(
      {
        tenantId: start.caller.tenantId,
        identifier: start.target.identifier,
        accountId: account.id,
        tokenId: start.caller.id,
      },
      start.context.readAt,
    );
  }

  get account(): ConnectedAccount {
    return this.#context.account.account;
  }

  /** The credential, decrypted once per execution (and again after a rotation). */
  #openCredential(): Promise<CloudflareCredential> {
    this.#credential ??= this.#context.account.open();
    return this.#credential;
  }

  /** Decrypts the credential ahead of the first request, so a vault failure refuses the call before any code runs. */
  async open(): Promise<void> {
    await this.#openCredential();
  }

  /**
   * Makes sure the call still holds what it may use: a revocation refuses, and a change (or a
   * bus that may have missed one) makes it read its context again, as the database has it now.
   */
  async #ensureCurrent(): Promise<void> {
    const expiresAt = this.#start.caller.expiresAt;
    if (expiresAt && this.#deps.clock.now() >= expiresAt) {
      throw new WardenError(
        'forbidden',
        'the MCP token expired while this execution was running; sign in again or mint a new token',
      );
    }
    const state = this.#live.state(this.#context.readAt);
    if (state === 'ok') return;
    if (state === 'stale') {
      const { caller } = this.#start;
      if (
        caller.type === 'mcp_token' &&
        this.#deps.isTokenActive &&
        !(await this.#deps.isTokenActive(caller.tenantId, caller.id))
      ) {
        throw new WardenError('forbidden', 'the MCP token was revoked while this execution was running');
      }
      let fresh: CallContext;
      try {
        fresh = await this.#deps.contexts.load(
          this.#start.caller,
          { identifier: this.#start.target.identifier, connectedAccountId: this.account.id },
          { fresh: true },
        );
      } catch (error) {
        if (isWardenError(error) && (error.code === 'not_found' || error.code === 'conflict')) {
          throw this.#revoked();
        }
        throw error;
      }
      this.#live.refreshed();
      if (fresh.account.account.updatedAt.getTime() !== this.account.updatedAt.getTime()) {
        this.#credential = null;
        this.#r2AccessKey = null;
      }
      this.#context = fresh;
      return;
    }
    throw this.#revokedNow();
  }

  #revoked(): WardenError {
    return new WardenError('forbidden', 'the connected account was revoked while this execution was running');
  }

  /** What the registry says was revoked: the token the call runs under, or its account or identity. */
  #revokedNow(): WardenError {
    return this.#start.caller.type === 'mcp_token'
      ? new WardenError(
          'forbidden',
          'the MCP token or the connected account was revoked while this execution was running',
        )
      : this.#revoked();
  }

  async #party(): Promise<UpstreamParty> {
    const { caller } = this.#start;
    const context = this.#context;
    const credential = await this.#openCredential();
    return {
      tenantId: caller.tenantId,
      subject: this.#subject,
      credential,
      principal: upstreamPrincipal(context.account.account),
      budget: context.settings.budget,
      policy: context.policy,
      // Right before sending: a revocation that arrived while the budget was consulted still stops it.
      admit: async () => {
        if (this.#live.state(context.readAt) === 'revoked') throw this.#revokedNow();
      },
      onUnauthorized: () => this.#deps.onUnauthorized?.(caller.tenantId, context.account.account, credential),
      ownTokenId: context.account.account.cloudflare.tokenId,
      settleLater: (settlement) => {
        this.#settling.add(settlement);
        void settlement.finally(() => this.#settling.delete(settlement));
      },
      ...(this.#plan ? { plan: this.#plan } : {}),
      ...(this.#start.replay ? { holdEveryWrite: true } : {}),
    };
  }

  /** `cloudflare.request` of the agent's code. */
  readonly upstream = async (request: UpstreamRequest, signal?: AbortSignal): Promise<UpstreamResponse> => {
    await this.#ensureCurrent();
    const party = await this.#party();
    const response = await this.#deps.gateway.send(
      party,
      { ...request, ...(signal ? { signal } : {}) },
      this.#journal,
    );
    // As long as the budget blocks this principal for it: the code may try again then.
    if (response.status === 429) throw cloudflareRateLimited(response);
    if (response.status === 403) {
      const operation = this.#deps.gateway.operation(request.method, request.path);
      const needed = operation?.permissions ?? [];
      const cfReason = response.errors.map((e) => e.message).join('; ') || 'forbidden';
      throw new WardenError(
        'forbidden',
        needed.length > 0
          ? `Cloudflare refused ${request.method} ${operation?.pathTemplate ?? request.path} (${cfReason}): the token needs one of these permissions: ${needed.join(', ')}. Grant it in the Cloudflare dashboard (My Profile > API Tokens) and retry.`
          : `Cloudflare refused ${request.method} ${request.path} (${cfReason}): the token lacks a permission this operation needs.`,
        { permissions: needed },
      );
    }
    return toSandboxResponse(response);
  };

  /** `r2.<op>` of the agent's code: the same checks, budget (its R2 window) and trail. */
  readonly r2 = async (request: R2Request, signal?: AbortSignal): Promise<unknown> => {
    if (!this.#deps.r2) throw new WardenError('invalid_request', `r2.${request.op}: R2 is not configured`);
    await this.#ensureCurrent();
    const party = await this.#party();
    // The vaulted R2 access key pair, decrypted once per execution (and again after a change).
    this.#r2AccessKey ??= this.#context.account.openR2();
    const keys = { accessKey: await this.#r2AccessKey, tokenId: this.account.cloudflare.tokenId };
    return this.#deps.r2.send(party, keys, request, this.#journal, signal);
  };

  /**
   * `tail.worker` of the agent's code: the same checks, the API budget and trail, and the tail
   * always deleted. The session also ends when the call loses what it holds while the tail runs
   * (the token or account revoked, the identity offboarded) or that can no longer be checked,
   * not only when the execution ends. The tail is counted as running from the call itself, before
   * anything is awaited, so `finish` always waits for its create and delete (and their records),
   * even for a tail the code started just as it returned.
   */
  readonly tail = (request: TailRequest, signal: AbortSignal): Promise<unknown> => {
    const running = this.#tail(request, signal);
    const settled = running.catch(() => undefined);
    this.#tails.add(settled);
    void settled.finally(() => this.#tails.delete(settled));
    return running;
  };

  async #tail(request: TailRequest, signal: AbortSignal): Promise<unknown> {
    const tails = this.#deps.tails;
    if (!tails) throw new WardenError('invalid_request', 'tail.worker: tails are not configured');
    if (this.#ended) {
      throw new WardenError('conflict', 'tail.worker: the execution has ended; no tail is started after it');
    }
    await this.#ensureCurrent();
    const party = await this.#party();
    // Events are scrubbed of the vaulted R2 secret too (decrypted once per execution).
    this.#r2AccessKey ??= this.#context.account.openR2();
    const r2AccessKey = await this.#r2AccessKey;
    const revoked = new AbortController();
    let checking = false;
    const watch = setInterval(() => {
      if (checking) return;
      checking = true;
      this.#ensureCurrent()
        .catch(() => revoked.abort())
        .finally(() => (checking = false));
    }, TAIL_REVOCATION_CHECK_MS);
    try {
      return await tails.worker(party, request, {
        journal: this.#journal,
        signal: AbortSignal.any([signal, revoked.signal]),
        r2AccessKey,
      });
    } finally {
      clearInterval(watch);
      // Ended by a revocation: the call fails as revoked, whatever the tail resolved to.
      if (revoked.signal.aborted) await this.#ensureCurrent();
    }
  }

  /**
   * Ends the call: its own record is written with every record still queued, and only once they
   * are all committed does the caller get a result (otherwise a 503).
   */
  async finish(outcome: SandboxOutcome): Promise<ExecuteToolResult> {
    this.#ended = true;
    try {
      // A tail cut short by the end of the execution is deleted (and recorded) before the call's record.
      await Promise.all(this.#tails);
      const held = this.#plan?.steps.length ?? 0;
      let error = outcome.ok ? null : outcome.error;
      const overLimit = this.#plan?.refusal;
      if (!error && overLimit) {
        // Over the plan limits: the code may have caught the refusal, but nothing is asked for.
        error = { code: overLimit.code, message: overLimit.message };
      } else if (error && held > 0) {
        // Nothing of a failed run is asked for: its plan may be cut short.
        error = {
          ...error,
          message: `${error.message} (${held} write(s) held for approval were dropped because the code failed; a write that needs the result of an earlier held write cannot be planned in the same run: plan the first write alone, and run again once it is approved)`,
        };
      }
      const approval =
        !error && held > 0 && this.#plan && this.#deps.approvals
          ? await this.#deps.approvals.request({
              caller: this.#start.caller,
              identifier: this.#start.target.identifier,
              connectedAccountId: this.account.id,
              executionId: this.id,
              plan: this.#plan,
              // Kept only as the tenant keeps code on the trail: to run it again, step by step.
              source: this.#context.settings.captureCode
                ? { code: this.#start.code, accountId: this.#start.accountId ?? null }
                : null,
            })
          : null;
      // The budget hears of every answer before the call ends (in parallel with its records).
      const settled = Promise.all(this.#settling);
      await this.#journal.flush([
        toolCallRecord(this.#subject, {
          outcome: error ? outcomeOf(error.code) : 'success',
          error,
          durationMs: this.#deps.clock.now().getTime() - this.#startedAt,
          code: this.#start.code,
          codeSha256: sha256Hex(this.#start.code),
          captureCode: this.#context.settings.captureCode,
          responseBytes: outcome.ok ? Buffer.byteLength(JSON.stringify(outcome.result ?? null)) : null,
        }),
      ]);
      await settled;
      return {
        executionId: this.id,
        data: outcome.ok ? (outcome.result ?? null) : null,
        error,
        truncated: outcome.ok ? (outcome.truncated ?? null) : null,
        logs: outcome.logs,
        approval,
      };
    } finally {
      this.#live.release();
    }
  }

  /** Ends a call that failed before it ran (the vault refused, the sandbox could not start). */
  release(): void {
    this.#ended = true;
    this.#live.release();
  }
}
