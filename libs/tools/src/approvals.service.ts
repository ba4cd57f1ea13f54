import { createHash } from 'node:crypto';
import type { AuditCaller, AuditStore, AuditSubject } from '@warden/audit';
import {
  AuditJournal,
  SYSTEM_CALLER,
  escapeAuditValue,
  lifecycleRecord,
  unescapeAuditValue,
} from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { WardenError, isWardenError, newId, noopLogger, notFound, systemClock } from '@warden/core';
import type { CloudflareResponse, HttpMethod } from '@warden/cloudflare';
import { decodeCursor, encodeCursor, isDatabaseUnavailable } from '@warden/db';
import type { ApprovalStatus, Database } from '@warden/db';
import type { LifecycleAudit } from '@warden/vault';
import { ssoPrincipalRef, validateIdentifier } from '@warden/vault';
import type { Kysely, Transaction } from 'kysely';
import { upstreamPrincipal } from './account-resolution.ts';
import type { CallContextSource } from './call-context.ts';
import type { ToolCaller } from './tool-caller.ts';
import { auditCaller } from './tool-caller.ts';
import { PENDING_APPROVAL_RESPONSE, upstreamError, wardenAnswer } from './upstream-gateway.ts';
import type { HeldWrite, PlanSink, UpstreamGateway } from './upstream-gateway.ts';

/** One write of a plan: exactly what will be sent, on its canonical path. */
export interface PlanStep {
  readonly seq: number;
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string | number | boolean>> | null;
  readonly body: unknown;
  readonly rawBody: string | null;
  readonly contentType: string | null;
  readonly operation: { readonly path_template: string; readonly permissions: readonly string[] } | null;
  /** The policy rule that held it. */
  readonly rule: string;
}

/**
 * One step of a plan applied in steps: the writes approving it sends (the first write of the plan
 * the agent's code made in the run that planned it, or all of them when none needs a value only
 * an earlier pending write would produce), and its decision. Its status is the approval's while
 * it is the last step, `applied` before.
 */
export interface ApprovalStep {
  readonly step: number;
  /** The run that planned it: the agent's execution, then each re-run of its code (null: it could not start). */
  readonly executionId: string | null;
  /** SHA-256 of that run's whole plan (the approval's `plan` while this step is the last); null when it planned none. */
  readonly planSha256: string | null;
  readonly sends: readonly PlanStep[];
  /** SHA-256 of `sends`: what approving this step sends, on the trail; null when it sends nothing. */
  readonly sendsSha256: string | null;
  readonly requestedAt: string;
  readonly decidedBy: AuditCaller | null;
  readonly decidedAt: string | null;
  readonly comment: string | null;
  /** Why the apply in steps stopped after this step's run (a re-run that failed or diverged). */
  readonly error: { readonly code: string; readonly message: string } | null;
}

export interface StepResult {
  readonly seq: number;
  /** Cloudflare's status, or null when the step was refused before it was sent. */
  readonly status: number | null;
  readonly success: boolean;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly result?: unknown;
}

export interface ApprovalView {
  readonly id: string;
  readonly status: ApprovalStatus;
  readonly identifier: string;
  readonly connectedAccountId: string;
  readonly executionId: string;
  readonly plan: readonly PlanStep[];
  readonly planSha256: string;
  /** A later write uses a value only an earlier held write could produce: not appliable as one plan. */
  readonly dependent: boolean;
  /**
   * A dependent plan whose agent code was kept (the tenant captures code): it is applied in steps,
   * the code re-run with each step's real results; `steps` holds them.
   */
  readonly inSteps: boolean;
  readonly steps: readonly ApprovalStep[] | null;
  readonly requestedBy: AuditCaller;
  readonly createdAt: Date;
  readonly expiresAt: Date;
  readonly decidedBy: AuditCaller | null;
  readonly decidedAt: Date | null;
  readonly comment: string | null;
  readonly results: readonly StepResult[] | null;
}

/**
 * How long an apply's lease holds without a renewal: the replica applying a plan renews it
 * (`apply_heartbeat_at`) every quarter of this while it runs and before every step it sends;
 * past it, the replica is taken to have stopped and any replica settles the apply as interrupted.
 * Longer than one step takes (the Cloudflare client's timeout plus a database round trip).
 */
export const DEFAULT_APPLY_LEASE_MS = 90_000;

/** Placeholders a value from a pending write leaves in a later request (`/dns_records/undefined`). */
const MISSING_VALUE = /(^|\/)(undefined|null|NaN|\[object Object\])(\/|$)/;

/** The largest plan one execution may ask approval for. */
export interface PlanLimits {
  /** Writes one plan may hold. */
  readonly maxSteps: number;
  /** Bytes of the plan's canonical JSON (what is stored and hashed). */
  readonly maxBytes: number;
}

export const DEFAULT_PLAN_LIMITS: PlanLimits = Object.freeze({ maxSteps: 20, maxBytes: 256 * 1024 });

/**
 * The writes one execution's policy held, in order: the gateway hands each here instead of
 * sending it, and the execution records them as one approval when it ends. A write beyond the
 * plan limits is refused (`payload_too_large`), and so is the whole plan: the execution then
 * records nothing for approval (a plan cut short is not what the code meant to do).
 */
export class ExecutionPlan implements PlanSink {
  readonly steps: PlanStep[] = [];
  readonly limits: PlanLimits;
  /** The `seq` of its first write (after the writes already applied, in a re-run). */
  readonly #firstSeq: number;
  #dependent = false;
  /** Bytes of the plan's canonical JSON so far (`[]` and the commas included). */
  #bytes = 2;
  #refusal: WardenError | null = null;

  constructor(limits: PlanLimits = DEFAULT_PLAN_LIMITS, firstSeq = 1) {
    this.limits = limits;
    this.#firstSeq = firstSeq;
  }

  /** Why this plan may not be asked for (it outgrew a limit), or null. */
  get refusal(): WardenError | null {
    return this.#refusal;
  }

  get bytes(): number {
    return this.#bytes;
  }

  hold(write: HeldWrite): CloudflareResponse {
    if (this.#refusal) throw this.#refusal;
    if (write.rule === null) {
      this.#refusal = unheldWrite(write);
      throw this.#refusal;
    }
    const step = planStep(this.#firstSeq + this.steps.length, { ...write, rule: write.rule });
    const size = Buffer.byteLength(canonicalJson(step), 'utf8') + (this.steps.length > 0 ? 1 : 0);
    const { maxSteps, maxBytes } = this.limits;
    if (this.steps.length + 1 > maxSteps) {
      this.#refusal = new WardenError(
        'payload_too_large',
        `${write.method} ${write.path} would be write ${this.steps.length + 1} of this plan, over the limit of ${maxSteps} writes per plan held for approval; nothing of this run will be asked for: plan fewer writes per run`,
        { limit: 'max_steps', max: maxSteps },
      );
    } else if (this.#bytes + size > maxBytes) {
      this.#refusal = new WardenError(
        'payload_too_large',
        `${write.method} ${write.path} would bring this plan to ${this.#bytes + size} bytes, over the limit of ${maxBytes} bytes per plan held for approval; nothing of this run will be asked for: plan smaller writes or fewer per run`,
        { limit: 'max_bytes', max: maxBytes },
      );
    }
    if (this.#refusal) throw this.#refusal;
    // Only after a held write can a value be missing because of one.
    if (this.steps.length > 0) {
      const text = `${write.path}?${JSON.stringify(write.query ?? {})}`;
      if (MISSING_VALUE.test(write.path) || /"(undefined|NaN)"/.test(text) || bodyHasMissing(write.body))
        this.#dependent = true;
    }
    this.steps.push(step);
    this.#bytes += size;
    return PENDING_APPROVAL_RESPONSE;
  }

  get dependent(): boolean {
    return this.#dependent;
  }
}

/**
 * The writes of a plan applied in steps, as a re-run of its agent code makes them: write N, when
 * already applied, must be the same request as the one applied (method, path, query, body) and
 * gets Cloudflare's recorded answer; the writes after them are held as the next step's plan. A
 * re-run that writes anything else diverged: refused, and the whole re-run with it.
 */
export class ReplayPlan extends ExecutionPlan {
  readonly #applied: readonly AppliedWrite[];
  #seen = 0;
  #divergence: WardenError | null = null;

  constructor(limits: PlanLimits, applied: readonly AppliedWrite[]) {
    super(limits, applied.length + 1);
    this.#applied = applied;
  }

  /** How the re-run departed from the writes applied (another write in their place), or null. */
  get divergence(): WardenError | null {
    return this.#divergence;
  }

  /** A re-run that ended without making every write already applied: it diverged too. */
  get shortfall(): WardenError | null {
    if (this.#seen >= this.#applied.length) return null;
    return new WardenError(
      'conflict',
      `the re-run of the agent's code made ${this.#seen} write(s), but ${this.#applied.length} were already applied: it does not plan the same writes when run again, so apply in steps stops here; nothing more is sent`,
      { field: 'plan' },
    );
  }

  override hold(write: HeldWrite): CloudflareResponse {
    if (this.#divergence) throw this.#divergence;
    const seq = ++this.#seen;
    const applied = this.#applied[seq - 1];
    if (!applied) return super.hold(write);
    const made = escapeAuditValue(planStep(seq, { ...write, rule: applied.step.rule }));
    if (canonicalJson(requestOf(made)) !== canonicalJson(requestOf(applied.step))) {
      this.#divergence =
        write.rule === null
          ? unheldWrite(write)
          : new WardenError(
              'conflict',
              `the re-run of the agent's code made ${write.method} ${write.path} as write ${seq}, but write ${seq} applied was ${applied.step.method} ${applied.step.path}${write.method === applied.step.method && made.path === applied.step.path ? ' with another query or body' : ''}: the code does not plan the same writes when run again (it may depend on the time, on chance, or on data that changed), so apply in steps stops here; nothing more is sent`,
              { field: 'plan', seq },
            );
      throw this.#divergence;
    }
    return wardenAnswer(applied.result.status ?? 200, applied.result.result ?? null);
  }
}

/**
 * Only a re-run holds every write: one no approve rule holds went out at once when the agent ran,
 * and a re-run never sends a write itself (nor may it ask approval to send it twice).
 */
function unheldWrite(write: HeldWrite): WardenError {
  return new WardenError(
    'conflict',
    `${write.method} ${write.path}: the re-run of the agent's code made a write no approve rule holds (such a write is sent at once when the agent runs, so it may already have gone out); a re-run never sends a write itself, so apply in steps stops here; nothing more is sent`,
    { field: 'plan' },
  );
}

/** A write already applied in an earlier step: what was sent, and what Cloudflare answered. */
export interface AppliedWrite {
  readonly step: PlanStep;
  readonly result: StepResult;
}

/** What makes two writes the same request. */
function requestOf(step: PlanStep) {
  return {
    method: step.method,
    path: step.path,
    query: step.query,
    body: step.body,
    rawBody: step.rawBody,
    contentType: step.contentType,
  };
}

function planStep(seq: number, write: HeldWrite & { readonly rule: string }): PlanStep {
  return {
    seq,
    method: write.method,
    path: write.path,
    query: write.query ?? null,
    body: write.rawBody === undefined ? (write.body ?? null) : null,
    rawBody: write.rawBody ?? null,
    contentType: write.contentType ?? null,
    operation: write.operation
      ? { path_template: write.operation.pathTemplate, permissions: write.operation.permissions }
      : null,
    rule: write.rule,
  };
}

function bodyHasMissing(body: unknown): boolean {
  if (body === null || body === undefined) return false;
  const json = typeof body === 'string' ? body : JSON.stringify(body);
  return /:\s*"(undefined|NaN)"/.test(json);
}

/** JSON with every object's keys sorted: the same text for the same plan, however it was stored. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item ?? null)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/**
 * The plan's digest, on the trail: SHA-256 of its canonical JSON (keys sorted), so anyone can
 * recompute it from the plan the API shows (PostgreSQL's jsonb keeps no key order) and check that
 * what was approved is what was sent.
 */
export function planDigest(plan: readonly PlanStep[]): string {
  return createHash('sha256').update(canonicalJson(plan)).digest('hex');
}

export interface ApprovalRequest {
  readonly caller: ToolCaller;
  readonly identifier: string;
  readonly connectedAccountId: string;
  readonly executionId: string;
  readonly plan: ExecutionPlan;
  /**
   * The code that planned it and the `account_id` it ran with, when the tenant captures code:
   * kept only for a dependent plan, which is then applied in steps (the code re-run each time).
   */
  readonly source: { readonly code: string; readonly accountId: string | null } | null;
}

/** One re-run of a plan's agent code, to learn the next step of an apply in steps. */
export interface StepRun {
  readonly approvalId: string;
  /** Who approved the step just applied: the re-run acts for them. */
  readonly caller: ToolCaller;
  readonly identifier: string;
  readonly connectedAccountId: string;
  readonly code: string;
  readonly accountId: string | null;
  /** Where the re-run's writes go: the applied ones answered, the rest held. */
  readonly plan: ReplayPlan;
}

/**
 * Runs a plan's agent code again in a fresh sandbox, with the identity's credential and policy as
 * they stand now: reads go to Cloudflare, every write goes to `plan` (none is sent), and the run
 * is on the trail as an execution of its own.
 */
export interface StepRunner {
  run(run: StepRun): Promise<{ executionId: string; error: { code: string; message: string } | null }>;
}

/** Tenant webhook events for approvals, in the transaction of the change. */
export type ApprovalEvents = (
  tx: Transaction<Database>,
  tenantId: string,
  event: { type: string; approval: ApprovalView },
) => Promise<void>;

export interface ApprovalServiceDeps {
  readonly db: Kysely<Database>;
  readonly audit: AuditStore;
  /** Lifecycle records in the change's transaction (requested, approved, rejected, applied, expired). */
  readonly lifecycleAudit: LifecycleAudit;
  readonly events?: ApprovalEvents;
  readonly gateway: UpstreamGateway;
  /** The identity's context as it stands at apply time (a revoked identity has none). */
  readonly contexts: CallContextSource;
  readonly expiryMs: number;
  /**
   * The API keys the tenant named as its approvers (settings `approvals.approver_api_key_ids`),
   * or null when any of its keys may decide.
   */
  readonly approvers?: (tenantId: string) => Promise<readonly string[] | null>;
  /** The largest plan an execution may ask for (DEFAULT_PLAN_LIMITS when not given). */
  readonly planLimits?: PlanLimits;
  /** An apply's lease (DEFAULT_APPLY_LEASE_MS when not given). */
  readonly applyLeaseMs?: number;
  /** Re-runs a dependent plan's code after each step; without it such plans are not applied. */
  readonly steps?: StepRunner;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** Who decides: a tenant API key (never the agent's MCP token). */
export interface Approver {
  readonly caller: ToolCaller;
}

type Row = Awaited<ReturnType<typeof selectRow>>;

function selectRow(db: Kysely<Database> | Transaction<Database>, tenantId: string, id: string) {
  return db
    .selectFrom('approvals')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('id', '=', id)
    .executeTakeFirst();
}

function toView(row: NonNullable<Row>): ApprovalView {
  return {
    id: row.id,
    status: row.status,
    identifier: row.identifier,
    connectedAccountId: row.connected_account_id,
    executionId: row.execution_id,
    plan: row.plan as PlanStep[],
    planSha256: row.plan_sha256,
    dependent: row.dependent,
    inSteps: row.steps !== null,
    steps: (row.steps as ApprovalStep[] | null) ?? null,
    requestedBy: row.requested_by as unknown as AuditCaller,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    decidedBy: (row.decided_by as unknown as AuditCaller | null) ?? null,
    decidedAt: row.decided_at,
    comment: row.comment,
    results: (row.results as StepResult[] | null) ?? null,
  };
}

/** What approving an approval sends now: its last step's writes, or its whole plan. */
function sendsOf(view: Pick<ApprovalView, 'plan' | 'steps'>): readonly PlanStep[] {
  return view.steps?.at(-1)?.sends ?? view.plan;
}

/** Whether every write of `sends` was applied with a success. */
function sentAll(sends: readonly PlanStep[], results: readonly StepResult[]): boolean {
  return sends.every((step) => results.some((r) => r.seq === step.seq && r.success));
}

/** A step of an apply in steps as the run that planned it leaves it (its plan stored as escaped). */
function stepOf(step: number, executionId: string, plan: readonly PlanStep[], dependent: boolean, at: Date) {
  // A write that needs a pending write's value waits for the next run: only the first goes now.
  const sends = dependent ? plan.slice(0, 1) : plan;
  const record: ApprovalStep = {
    step,
    executionId,
    planSha256: planDigest(plan),
    sends,
    sendsSha256: planDigest(sends),
    requestedAt: at.toISOString(),
    decidedBy: null,
    decidedAt: null,
    comment: null,
    error: null,
  };
  return record;
}

/** The steps (JSON) with the last one changed, or nothing for a plan applied at once. */
function lastStepSet(view: ApprovalView, set: Partial<ApprovalStep>): { steps?: string } {
  if (!view.steps) return {};
  const earlier = view.steps.slice(0, -1);
  const last = view.steps.at(-1);
  return { steps: JSON.stringify([...earlier, { ...last, ...set }]) };
}

export function createApprovalService(deps: ApprovalServiceDeps) {
  const { db } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? noopLogger;
  const events = deps.events ?? (async () => {});
  const leaseMs = deps.applyLeaseMs ?? DEFAULT_APPLY_LEASE_MS;
  const planLimits = deps.planLimits ?? DEFAULT_PLAN_LIMITS;

  /** One lifecycle record of an approval, in the change's transaction. */
  async function recordChange(
    tx: Transaction<Database>,
    tenantId: string,
    caller: AuditCaller,
    approval: ApprovalView,
    action: string,
    details: Record<string, unknown> = {},
  ): Promise<void> {
    await deps.lifecycleAudit(tx, tenantId, [
      lifecycleRecord(
        {
          caller,
          identifier: approval.identifier,
          executionId: approval.executionId,
          connectedAccountId: approval.connectedAccountId,
        },
        {
          action,
          details: { approval_id: approval.id, plan_sha256: approval.planSha256, ...details },
        },
      ),
    ]);
  }

  async function change(
    tx: Transaction<Database>,
    row: NonNullable<Row>,
    set: Partial<{
      status: ApprovalStatus;
      comment: string | null;
      results: string;
      finished_at: Date;
      apply_heartbeat_at: Date | null;
      steps: string;
      plan: string;
      plan_sha256: string;
      dependent: boolean;
      expires_at: Date;
      decided_by: string | null;
      decided_at: Date | null;
    }>,
  ): Promise<ApprovalView> {
    const updated = await tx
      .updateTable('approvals')
      // Settled: the agent's code kept to apply in steps is not needed any more (the trail keeps it, under its retention).
      .set(set.finished_at ? { ...set, replay_code: null, replay_account_id: null } : set)
      .where('tenant_id', '=', row.tenant_id)
      .where('id', '=', row.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return toView(updated);
  }

  /**
   * Settles an approval whose time is up (in `tx`): a pending one past `expires_at` expires; an
   * approved one whose apply never finished (the replica applying it stopped) fails as
   * interrupted, its sent steps on the trail under the approval's id. Returns the settled view.
   */
  async function expireIfDue(tx: Transaction<Database>, row: NonNullable<Row>): Promise<ApprovalView | null> {
    if (!due(row)) return null;
    const now = clock.now();
    if (row.status === 'approved') {
      const view = toView(row);
      const sends = sendsOf(view);
      const interrupted = await interruptedResults(row, sends);
      // Every step answered a success before the stop: the plan was applied, only not recorded.
      // Not so for a step of an apply in steps: the code was not run again to learn what follows.
      const sent = sentAll(sends, interrupted);
      const applied = sent && !view.inSteps;
      const settled = await change(tx, row, {
        status: applied ? 'applied' : 'failed',
        results: JSON.stringify(escapeAuditValue(interrupted)),
        finished_at: now,
        ...(sent && view.inSteps
          ? lastStepSet(view, {
              error: {
                code: 'unavailable',
                message:
                  "the apply was interrupted after this step's writes went out, before the agent's code was run again: nothing more is sent; plan the rest anew",
              },
            })
          : {}),
      });
      const action = applied ? 'approval.applied' : 'approval.failed';
      await recordChange(tx, row.tenant_id, SYSTEM_CALLER, settled, action, {
        interrupted: true,
        results: interrupted.map(({ result: _result, ...step }) => step),
      });
      await events(tx, row.tenant_id, { type: action, approval: settled });
      return settled;
    }
    const expired = await change(tx, row, { status: 'expired', finished_at: now });
    await recordChange(tx, row.tenant_id, SYSTEM_CALLER, expired, 'approval.expired');
    await events(tx, row.tenant_id, { type: 'approval.expired', approval: expired });
    return expired;
  }

  /**
   * The per-step results of an apply that stopped without finishing: what its progress recorded,
   * then, from the write-ahead intents on the trail under the approval's id, the steps that went
   * out after it (their answers unknown), then the first step not sent.
   */
  async function interruptedResults(
    row: NonNullable<Row>,
    sends: readonly PlanStep[],
  ): Promise<StepResult[]> {
    const recorded = (row.results as StepResult[] | null) ?? [];
    const progress = new Map(recorded.map((r) => [r.seq, r]));
    // The intents since this apply's decision (earlier steps of an apply in steps were decided before).
    const { events: intents } = await deps.audit.query(row.tenant_id, {
      ...(row.decided_at ? { from: row.decided_at } : {}),
      executionId: row.id,
      kind: 'upstream_request',
      outcome: 'pending',
      pageSize: sends.length + 1,
    });
    // The results of earlier steps stand.
    const results = recorded.filter((r) => !sends.some((step) => step.seq === r.seq));
    for (const [index, step] of sends.entries()) {
      const known = progress.get(step.seq);
      if (known) {
        results.push(known);
        if (!known.success) break;
      } else if (index < intents.length) {
        results.push({
          seq: step.seq,
          status: null,
          success: false,
          error: {
            code: 'unknown',
            message:
              "sent (its write-ahead intent is on the audit trail under this approval's id), but the apply was interrupted before Cloudflare's answer was recorded: check the resource",
          },
        });
      } else {
        results.push({
          seq: step.seq,
          status: null,
          success: false,
          error: {
            code: 'unavailable',
            message:
              'not sent: the apply was interrupted (the replica applying it stopped, or lost its database) before this step',
          },
        });
        break;
      }
    }
    return results;
  }

  /**
   * Whether an approval's time is up (see expireIfDue), without a lock: a pending one past its
   * expiry, or an approved one whose apply lease was not renewed for `leaseMs`.
   */
  function due(row: {
    status: ApprovalStatus;
    expires_at: Date;
    decided_at: Date | null;
    apply_heartbeat_at: Date | null;
  }): boolean {
    const now = clock.now().getTime();
    if (row.status === 'pending') return row.expires_at.getTime() <= now;
    const renewed = row.apply_heartbeat_at ?? row.decided_at;
    return row.status === 'approved' && renewed !== null && now - renewed.getTime() >= leaseMs;
  }

  /**
   * The lease of one apply: renewed only while it still holds (the approval still `approved`, its
   * last renewal younger than the lease), so once another replica could have settled the apply as
   * interrupted this one sends nothing more. Renewed in the background while a step waits on
   * Cloudflare, and checked before every step.
   */
  function applyLease(tenantId: string, id: string) {
    const renew = async (): Promise<boolean> => {
      const now = clock.now();
      const renewed = await db
        .updateTable('approvals')
        .set({ apply_heartbeat_at: now })
        .where('tenant_id', '=', tenantId)
        .where('id', '=', id)
        .where('status', '=', 'approved')
        .where('apply_heartbeat_at', '>', new Date(now.getTime() - leaseMs))
        .executeTakeFirst();
      return renewed.numUpdatedRows > 0n;
    };
    const timer = setInterval(() => {
      renew().catch((error: unknown) => {
        logger.warn({ err: error, approvalId: id }, 'could not renew the lease of an apply');
      });
    }, leaseMs / 4);
    timer.unref();
    return {
      /** Whether the apply may send its next step (false: the lease lapsed, or the store is away). */
      async held(): Promise<boolean> {
        try {
          return await renew();
        } catch (error) {
          logger.warn({ err: error, approvalId: id }, 'could not renew the lease of an apply');
          return false;
        }
      },
      release(): void {
        clearInterval(timer);
      },
    };
  }

  /** Reads one approval, locked for a decision, expiring it first when its time is up. */
  async function locked(tx: Transaction<Database>, tenantId: string, id: string) {
    const row = await tx
      .selectFrom('approvals')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('id', '=', id)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw notFound('approval');
    return row;
  }

  /**
   * Separation of duties: the principal that planned the writes (the API key or MCP token whose
   * execution held them) never decides them, nor does the person they were planned for (an SSO
   * console session is that person's identifier, whatever token or key their agent used), nor a
   * person who minted the planning MCP token in the console (they were shown its secret);
   * another person must.
   */
  async function assertNotPlanner(
    tx: Transaction<Database>,
    row: NonNullable<Row>,
    approver: Approver,
    verb: 'approve' | 'reject',
  ): Promise<void> {
    const planner = row.requested_by as unknown as AuditCaller;
    if (approver.caller.type === 'sso' && approver.caller.id.toLowerCase() === row.identifier.toLowerCase()) {
      throw new WardenError(
        'self_approval',
        `approval ${row.id}: these writes were planned for ${row.identifier}, the person signed in, so they cannot ${verb} them; another person must approve or reject this plan`,
      );
    }
    if (approver.caller.type === 'sso' && planner.type === 'mcp_token') {
      const token = await tx
        .selectFrom('mcp_tokens')
        .select('created_by')
        .where('tenant_id', '=', row.tenant_id)
        .where('id', '=', planner.id)
        .executeTakeFirst();
      if (token?.created_by === ssoPrincipalRef(approver.caller.id)) {
        throw new WardenError(
          'self_approval',
          `approval ${row.id}: these writes were planned with MCP token ${planner.id}, which the person signed in minted (and was shown), so they cannot ${verb} them; another person must approve or reject this plan`,
        );
      }
    }
    if (planner.type !== approver.caller.type || planner.id !== approver.caller.id) return;
    throw new WardenError(
      'self_approval',
      `approval ${row.id}: this ${planner.type === 'api_key' ? 'API key' : 'token'} (${planner.id}) planned these writes, so it cannot ${verb} them; another person must approve or reject this plan with their own API key`,
    );
  }

  /** When the tenant named its approvers, only they decide. */
  async function assertApprover(approver: Approver, verb: 'approve' | 'reject'): Promise<void> {
    const named = (await deps.approvers?.(approver.caller.tenantId)) ?? null;
    if (!named || named.length === 0) return;
    if (approver.caller.type === 'api_key' && named.includes(approver.caller.id)) return;
    throw new WardenError(
      'forbidden',
      `this API key (${approver.caller.id}) is not one of the approvers this tenant named (settings approvals.approver_api_key_ids), so it cannot ${verb} write approvals; one of them must`,
    );
  }

  function comment(value: unknown): string | null {
    if (value === undefined || value === null) return null;
    if (typeof value !== 'string' || value.length > 2_000 || /(?![\t\n\r])\p{Cc}/u.test(value))
      throw new WardenError(
        'invalid_request',
        'comment: must be text of at most 2,000 characters (no control characters)',
        {
          field: 'comment',
        },
      );
    return value;
  }

  /**
   * Sends the approved plan, step by step, with the identity's credential and policy as they
   * stand now (deny rules refuse; approve rules let an approved step through), through the same
   * budget and write-ahead audit as agent code. Stops at the first step that fails.
   */
  async function apply(
    tenantId: string,
    approval: ApprovalView,
    approver: Approver,
    sends: readonly PlanStep[],
    earlier: readonly StepResult[],
  ): Promise<Applied> {
    // An apply in steps records its results after those of the steps applied before.
    const results: StepResult[] = [...earlier];
    const target = { identifier: approval.identifier, connectedAccountId: approval.connectedAccountId };
    /**
     * The identity's context as it stands right now, read again before every step: an
     * offboarding, a revocation or a deny rule that lands while a plan is being applied stops
     * the steps not yet sent, as it stops a running execution.
     */
    const current = async (seq: number) => {
      try {
        return {
          ok: true as const,
          context: await deps.contexts.load(approver.caller, target, { fresh: true }),
        };
      } catch (error) {
        const reason = isWardenError(error)
          ? `${error.code}: ${error.message}`
          : 'the identity could not be read';
        const unavailableNow =
          isDatabaseUnavailable(error) || (isWardenError(error) && error.code === 'unavailable');
        const refused: StepResult = {
          seq,
          status: null,
          success: false,
          error: unavailableNow
            ? { code: 'unavailable', message: `not sent: ${NOT_SENT_UNAVAILABLE}` }
            : {
                code: 'forbidden',
                message: `not sent: the identity ${approval.identifier} no longer holds connected account ${approval.connectedAccountId} (${reason})`,
              },
        };
        return { ok: false as const, refused };
      }
    };
    const first = await current(sends[0]?.seq ?? 1);
    if (!first.ok) return { results: [...earlier, first.refused], journal: null };
    const lease = applyLease(tenantId, approval.id);
    const journal = new ApplyJournal(deps.audit, tenantId, first.context.settings.retentionDays);
    /**
     * The steps' results so far, on the approval's row after every step: a read from any replica
     * shows what went out while the apply runs, and after it stopped without finishing. When it
     * cannot be written the database is away, and so would be the next step's write-ahead
     * intent: the apply stops there.
     */
    const progress = async (): Promise<boolean> => {
      try {
        await db
          .updateTable('approvals')
          .set({ results: JSON.stringify(escapeAuditValue(results)) })
          .where('tenant_id', '=', tenantId)
          .where('id', '=', approval.id)
          .where('status', '=', 'approved')
          .execute();
        return true;
      } catch (error) {
        logger.warn({ err: error, approvalId: approval.id }, 'could not record the progress of an apply');
        return false;
      }
    };
    const subject: AuditSubject = {
      caller: auditCaller(approver.caller),
      identifier: approval.identifier,
      // Every applied request carries the approval's id: the trail links plan, decision and sends.
      executionId: approval.id,
      agentRunId: null,
      toolName: 'cloudflare_execute',
      connectedAccountId: approval.connectedAccountId,
    };
    try {
      let context = first.context;
      for (const [index, step] of sends.entries()) {
        if (index > 0) {
          const now = await current(step.seq);
          if (!now.ok) {
            results.push(now.refused);
            break;
          }
          context = now.context;
        }
        // Last thing before the step goes out (its write-ahead intent is committed next): a replica
        // that settles this apply as interrupted counts the intents only after the lease lapsed.
        if (!(await lease.held())) {
          results.push({
            seq: step.seq,
            status: null,
            success: false,
            error: { code: 'unavailable', message: `not sent: ${NOT_SENT_LEASE_LAPSED}` },
          });
          break;
        }
        try {
          const credential = await context.account.open();
          const party = {
            tenantId,
            subject,
            credential,
            principal: upstreamPrincipal(context.account.account),
            budget: context.settings.budget,
            policy: context.policy,
            approved: true,
            // An approved write may not change the token Warden holds either.
            ownTokenId: context.account.account.cloudflare.tokenId,
          };
          const original = unescapeAuditValue(step);
          const response = await deps.gateway.send(
            party,
            {
              method: original.method as HttpMethod,
              path: original.path,
              ...(original.query ? { query: original.query } : {}),
              ...(original.rawBody !== null
                ? { rawBody: original.rawBody }
                : original.body !== null
                  ? { body: original.body }
                  : {}),
              ...(original.contentType ? { contentType: original.contentType } : {}),
            },
            journal,
          );
          const failed = !response.success;
          results.push({
            seq: step.seq,
            status: response.status,
            success: !failed,
            error: failed ? upstreamError(response) : null,
            result: response.result,
          });
          if (failed) break;
        } catch (error) {
          const wrapped = isWardenError(error)
            ? error
            : isDatabaseUnavailable(error)
              ? new WardenError('unavailable', NOT_SENT_UNAVAILABLE)
              : new WardenError('upstream_error', 'the step could not be sent');
          results.push({
            seq: step.seq,
            status: null,
            success: false,
            error: { code: wrapped.code, message: wrapped.message },
          });
          break;
        }
        const next = sends[index + 1];
        if (next && !(await progress())) {
          results.push({
            seq: next.seq,
            status: null,
            success: false,
            error: { code: 'unavailable', message: `not sent: ${NOT_SENT_UNAVAILABLE}` },
          });
          break;
        }
      }
    } finally {
      lease.release();
      await journal.flush().catch((error: unknown) => {
        logger.error(
          { err: error, approvalId: approval.id },
          'could not write the records of an applied plan',
        );
      });
    }
    return { results, journal };
  }

  /**
   * Applies whose outcome could not be recorded (the database went away mid-apply), by id: the
   * first call of this service once the store is back records them (`settleUnfinished`), with
   * the results only this replica knows.
   */
  const unfinished = new Map<string, Unfinished>();

  /**
   * After a step of an apply in steps went out: runs the agent's code again, its applied writes
   * answered with their real results, and says what follows (more writes to approve, none, or why
   * it stops). The apply's lease is renewed while the code runs.
   */
  async function runAgain(
    tenantId: string,
    approval: ApprovalView,
    source: { code: string; accountId: string | null },
    approver: Approver,
    results: readonly StepResult[],
  ): Promise<NextStep> {
    const stopped = (executionId: string | null, error: WardenError): NextStep => ({
      kind: 'stopped',
      executionId,
      error: { code: error.code, message: error.message },
    });
    if (!deps.steps) {
      return stopped(null, new WardenError('unavailable', 'this deployment cannot run agent code again'));
    }
    // The tenant may have stopped keeping its agents' code since the plan was made: then it is
    // not run again (and is dropped when the approval settles as failed).
    const target = { identifier: approval.identifier, connectedAccountId: approval.connectedAccountId };
    try {
      const { settings } = await deps.contexts.load(approver.caller, target, { fresh: true });
      if (!settings.captureCode) {
        return stopped(
          null,
          new WardenError(
            'conflict',
            "this tenant no longer keeps the code its agents run (audit settings: capture_code was turned off after the plan was made), so the agent's code is not run again; nothing more is sent; plan the rest anew",
          ),
        );
      }
    } catch (error) {
      const reason = isWardenError(error) ? `${error.code}: ${error.message}` : 'unreadable';
      return stopped(
        null,
        new WardenError(
          'unavailable',
          `the identity's settings could not be read (${reason}); nothing more is sent`,
        ),
      );
    }
    const bySeq = new Map(results.map((r) => [r.seq, r]));
    const applied: AppliedWrite[] = [];
    for (const step of approval.steps?.flatMap((s) => s.sends) ?? []) {
      const result = bySeq.get(step.seq);
      if (result) applied.push({ step, result });
    }
    const plan = new ReplayPlan(planLimits, applied);
    const lease = applyLease(tenantId, approval.id);
    try {
      const ran = await deps.steps.run({
        approvalId: approval.id,
        caller: approver.caller,
        identifier: approval.identifier,
        connectedAccountId: approval.connectedAccountId,
        code: source.code,
        accountId: source.accountId,
        plan,
      });
      const diverged = plan.divergence;
      if (diverged) return stopped(ran.executionId, diverged);
      if (ran.error) {
        return stopped(
          ran.executionId,
          new WardenError(
            'conflict',
            `the re-run of the agent's code failed (${ran.error.code}: ${ran.error.message}), so apply in steps stops here; nothing more is sent`,
          ),
        );
      }
      const short = plan.shortfall;
      if (short) return stopped(ran.executionId, short);
      return plan.steps.length === 0
        ? { kind: 'done', executionId: ran.executionId }
        : { kind: 'next', executionId: ran.executionId, plan };
    } catch (error) {
      logger.warn(
        { err: error, approvalId: approval.id },
        'could not run the code of an apply in steps again',
      );
      return stopped(
        null,
        new WardenError(
          isWardenError(error) ? error.code : 'unavailable',
          `the agent's code could not be run again (${isWardenError(error) ? error.message : 'the sandbox or the identity could not be reached'}), so apply in steps stops here; nothing more is sent`,
        ),
      );
    } finally {
      lease.release();
    }
  }

  /** Records how an apply ended: status, per-step results, trail record and event. */
  async function finishApply(done: Unfinished): Promise<ApprovalView> {
    const { tenantId, id, results, sends, next } = done;
    // Outcome records the store could not take during the apply go first.
    await done.journal?.flush().catch((error: unknown) => {
      logger.error({ err: error, approvalId: id }, 'could not write the records of an applied plan');
    });
    const caller = auditCaller(done.approver.caller);
    const stepResults = results
      .filter((r) => sends.some((step) => step.seq === r.seq))
      .map(({ result: _result, ...step }) => step);
    return db.transaction().execute(async (tx) => {
      const row = await locked(tx, tenantId, id);
      // Settled meanwhile (as interrupted, by a replica that found it stalled): that stands.
      if (row.status !== 'approved') return toView(row);
      const view = toView(row);
      const now = clock.now();
      const stepNo = view.steps?.at(-1)?.step;
      if (next?.kind === 'next' && stepNo !== undefined) {
        // The re-run planned more: the next step waits for a person, as a plan of its own.
        const plan = escapeAuditValue(next.plan.steps);
        const step = stepOf(stepNo + 1, next.executionId, plan, next.plan.dependent, now);
        await recordChange(tx, tenantId, caller, view, 'approval.step_applied', {
          step: stepNo,
          results: stepResults,
        });
        const pending = await change(tx, row, {
          status: 'pending',
          plan: JSON.stringify(plan),
          plan_sha256: step.planSha256 ?? planDigest(plan),
          dependent: next.plan.dependent,
          results: JSON.stringify(escapeAuditValue(results)),
          steps: JSON.stringify([...(view.steps ?? []), step]),
          decided_by: null,
          decided_at: null,
          comment: null,
          apply_heartbeat_at: null,
          expires_at: new Date(now.getTime() + deps.expiryMs),
        });
        await recordChange(tx, tenantId, caller, pending, 'approval.requested', {
          step: step.step,
          planned_by: next.executionId,
          steps: plan.length,
          dependent: pending.dependent,
          sends_sha256: step.sendsSha256,
          expires_at: pending.expiresAt.toISOString(),
        });
        await events(tx, tenantId, { type: 'approval.requested', approval: pending });
        return pending;
      }
      const ok = sentAll(sends, results) && (!view.inSteps || next?.kind === 'done');
      const stoppedStep =
        next?.kind === 'stopped' && stepNo !== undefined
          ? {
              steps: JSON.stringify([
                ...(view.steps ?? []),
                {
                  step: stepNo + 1,
                  executionId: next.executionId,
                  planSha256: null,
                  sends: [],
                  sendsSha256: null,
                  requestedAt: now.toISOString(),
                  decidedBy: null,
                  decidedAt: null,
                  comment: null,
                  error: next.error,
                } satisfies ApprovalStep,
              ]),
            }
          : {};
      const finished = await change(tx, row, {
        status: ok ? 'applied' : 'failed',
        results: JSON.stringify(escapeAuditValue(results)),
        finished_at: now,
        ...stoppedStep,
      });
      await recordChange(tx, tenantId, caller, finished, ok ? 'approval.applied' : 'approval.failed', {
        results: stepResults,
        ...(stepNo !== undefined ? { step: stepNo } : {}),
        ...(next?.kind === 'stopped' ? { reason: next.error, run_by: next.executionId } : {}),
        ...(next?.kind === 'done' ? { run_by: next.executionId } : {}),
      });
      await events(tx, tenantId, { type: ok ? 'approval.applied' : 'approval.failed', approval: finished });
      return finished;
    });
  }

  /** Records the applies of this tenant whose outcome the store could not take before. */
  async function settleUnfinished(tenantId: string): Promise<void> {
    for (const [id, done] of unfinished) {
      if (done.tenantId !== tenantId) continue;
      try {
        await finishApply(done);
        unfinished.delete(id);
      } catch {
        return; // Still away: the call itself will say so.
      }
    }
  }

  return {
    /** An empty plan for one execution, under this deployment's plan limits. */
    newPlan(): ExecutionPlan {
      return new ExecutionPlan(planLimits);
    },

    /** Records an execution's held writes as a pending approval (with its trail record and event). */
    async request(input: ApprovalRequest): Promise<ApprovalView> {
      const { caller } = input;
      if (input.plan.refusal) throw input.plan.refusal;
      // Stored as the trail stores text: a NUL or an unpaired surrogate escaped, reversibly (the
      // apply sends the original); the digest is of what is stored and shown.
      const plan = escapeAuditValue(input.plan.steps);
      const now = clock.now();
      // A dependent plan is applied in steps when its code can be run again.
      const source = input.plan.dependent && deps.steps ? input.source : null;
      const first = source ? stepOf(1, input.executionId, plan, true, now) : null;
      return db.transaction().execute(async (tx) => {
        const row = await tx
          .insertInto('approvals')
          .values({
            id: newId('apr'),
            tenant_id: caller.tenantId,
            identifier: input.identifier,
            connected_account_id: input.connectedAccountId,
            execution_id: input.executionId,
            status: 'pending',
            plan: JSON.stringify(plan),
            plan_sha256: planDigest(plan),
            dependent: input.plan.dependent,
            replay_code: source?.code ?? null,
            replay_account_id: source?.accountId ?? null,
            steps: first ? JSON.stringify([first]) : null,
            requested_by: JSON.stringify(auditCaller(caller)),
            created_at: now,
            expires_at: new Date(now.getTime() + deps.expiryMs),
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        const view = toView(row);
        await recordChange(tx, caller.tenantId, auditCaller(caller), view, 'approval.requested', {
          steps: plan.length,
          dependent: view.dependent,
          ...(first ? { step: 1, sends_sha256: first.sendsSha256 } : {}),
          expires_at: view.expiresAt.toISOString(),
        });
        await events(tx, caller.tenantId, { type: 'approval.requested', approval: view });
        return view;
      });
    },

    /** Newest first, a page at a time (keyset on created_at, id). */
    async list(
      tenantId: string,
      query: { status?: ApprovalStatus; identifier?: string; pageSize?: number; pageToken?: string },
    ): Promise<{ approvals: ApprovalView[]; nextPageToken: string | null }> {
      if (query.identifier !== undefined) validateIdentifier(query.identifier);
      await settleUnfinished(tenantId);
      // Approvals whose time is up are reported (and recorded) as expired or interrupted.
      const now = clock.now();
      const open = await db
        .selectFrom('approvals')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .where((eb) =>
          eb.or([
            eb.and([eb('status', '=', 'pending'), eb('expires_at', '<=', now)]),
            eb.and([
              eb('status', '=', 'approved'),
              eb(eb.fn.coalesce('apply_heartbeat_at', 'decided_at'), '<=', new Date(now.getTime() - leaseMs)),
            ]),
          ]),
        )
        .execute();
      for (const row of open) {
        await db.transaction().execute(async (tx) => expireIfDue(tx, await locked(tx, tenantId, row.id)));
      }
      const pageSize = query.pageSize ?? 50;
      let q = db.selectFrom('approvals').selectAll().where('tenant_id', '=', tenantId);
      if (query.status) q = q.where('status', '=', query.status);
      if (query.identifier) q = q.where('identifier', '=', query.identifier);
      if (query.pageToken) {
        const after = decodeCursor(query.pageToken);
        q = q.where((eb) =>
          eb.or([
            eb('created_at', '<', after.createdAt),
            eb.and([eb('created_at', '=', after.createdAt), eb('id', '<', after.id)]),
          ]),
        );
      }
      const rows = await q
        .orderBy('created_at', 'desc')
        .orderBy('id', 'desc')
        .limit(pageSize + 1)
        .execute();
      const page = rows.slice(0, pageSize).map(toView);
      const last = page.at(-1);
      return {
        approvals: page,
        nextPageToken:
          rows.length > pageSize && last ? encodeCursor({ createdAt: last.createdAt, id: last.id }) : null,
      };
    },

    async get(tenantId: string, id: string): Promise<ApprovalView> {
      await settleUnfinished(tenantId);
      const row = await selectRow(db, tenantId, id);
      if (!row) throw notFound('approval');
      if (due(row)) {
        return db.transaction().execute(async (tx) => {
          const current = await locked(tx, tenantId, id);
          return (await expireIfDue(tx, current)) ?? toView(current);
        });
      }
      return toView(row);
    },

    /** Rejects a pending approval: nothing of its plan is ever sent. */
    async reject(approver: Approver, id: string, input: Decision): Promise<ApprovalView> {
      const tenantId = approver.caller.tenantId;
      const note = comment(input.comment);
      await settleUnfinished(tenantId);
      await assertApprover(approver, 'reject');
      const outcome = await db.transaction().execute(async (tx) => {
        const row = await locked(tx, tenantId, id);
        await assertNotPlanner(tx, row, approver, 'reject');
        const settled = await expireIfDue(tx, row);
        if (settled) return { kind: 'decided' as const, status: settled.status };
        if (row.status !== 'pending') return { kind: 'decided' as const, status: row.status };
        assertStepNamed(toView(row), input.step, 'reject');
        const rejected = await change(tx, row, {
          status: 'rejected',
          decided_by: JSON.stringify(auditCaller(approver.caller)),
          decided_at: clock.now(),
          comment: note,
          finished_at: clock.now(),
          ...lastStepSet(toView(row), {
            decidedBy: auditCaller(approver.caller),
            decidedAt: clock.now().toISOString(),
            comment: note,
          }),
        });
        await recordChange(tx, tenantId, auditCaller(approver.caller), rejected, 'approval.rejected', {
          comment: note,
        });
        await events(tx, tenantId, { type: 'approval.rejected', approval: rejected });
        return { kind: 'rejected' as const, rejected };
      });
      if (outcome.kind === 'rejected') return outcome.rejected;
      throw decidedError(id, outcome.status);
    },

    /**
     * Approves a pending approval and applies its plan at once. Two approvers racing: the row lock
     * lets one decide; the other is told it is already decided. Returns the applied approval with
     * each step's result.
     */
    /**
     * Settles what is due without anyone reading it: pending approvals past their expiry become
     * `expired` (their event sent, the agent's stored code dropped), and an apply whose lease
     * lapsed is settled as interrupted. A scheduled job calls this; returns how many it settled.
     */
    async expireDue(limit = 100): Promise<number> {
      const now = clock.now();
      const candidates = await db
        .selectFrom('approvals')
        .select(['tenant_id', 'id', 'status', 'expires_at', 'decided_at', 'apply_heartbeat_at'])
        .where((eb) =>
          eb.or([
            eb.and([eb('status', '=', 'pending'), eb('expires_at', '<=', now)]),
            eb('status', '=', 'approved'),
          ]),
        )
        .orderBy('expires_at')
        .limit(limit)
        .execute();
      let settled = 0;
      for (const candidate of candidates.filter((c) => due(c))) {
        const done = await db.transaction().execute(async (tx) => {
          const row = await locked(tx, candidate.tenant_id, candidate.id);
          return expireIfDue(tx, row);
        });
        if (done) settled++;
      }
      return settled;
    },

    async approve(approver: Approver, id: string, input: Decision): Promise<ApprovalView> {
      const tenantId = approver.caller.tenantId;
      const note = comment(input.comment);
      await settleUnfinished(tenantId);
      await assertApprover(approver, 'approve');
      const decided = await db.transaction().execute(async (tx) => {
        const row = await locked(tx, tenantId, id);
        await assertNotPlanner(tx, row, approver, 'approve');
        const settled = await expireIfDue(tx, row);
        if (settled) return { kind: 'decided' as const, status: settled.status };
        if (row.status !== 'pending') return { kind: 'decided' as const, status: row.status };
        if (row.dependent && row.steps === null) return { kind: 'dependent' as const };
        const current = toView(row);
        assertStepNamed(current, input.step, 'approve');
        const step = current.steps?.at(-1);
        const approved = await change(tx, row, {
          status: 'approved',
          decided_by: JSON.stringify(auditCaller(approver.caller)),
          decided_at: clock.now(),
          apply_heartbeat_at: clock.now(),
          comment: note,
          ...lastStepSet(current, {
            decidedBy: auditCaller(approver.caller),
            decidedAt: clock.now().toISOString(),
            comment: note,
          }),
        });
        await recordChange(tx, tenantId, auditCaller(approver.caller), approved, 'approval.approved', {
          comment: note,
          ...(step ? { step: step.step, sends_sha256: step.sendsSha256 } : {}),
        });
        await events(tx, tenantId, { type: 'approval.approved', approval: approved });
        const source =
          row.replay_code === null ? null : { code: row.replay_code, accountId: row.replay_account_id };
        return { kind: 'approved' as const, approved, source };
      });
      if (decided.kind === 'decided') throw decidedError(id, decided.status);
      if (decided.kind === 'dependent') {
        throw new WardenError(
          'conflict',
          `approval ${id}: a later write of this plan uses a value only an earlier write would produce (a placeholder such as undefined in its path or body), so it cannot be applied as recorded; it could be applied in steps, running the agent's code again with each step's real result, but this tenant does not keep the code its agents run (audit settings: capture_code is off), so there is none to run. Reject it; to have such plans applied in steps, turn code capture on (PATCH /api/v1/settings {"audit": {"capture_code": true}}) and let the agent plan again`,
          { field: 'plan' },
        );
      }
      const { approved, source } = decided;
      const sends = sendsOf(approved);
      // An apply in steps records its writes' results after those of earlier steps (the originals, not the stored form).
      const earlier = approved.inSteps ? unescapeAuditValue(approved.results ?? []) : [];
      const { results, journal } = await apply(tenantId, approved, approver, sends, earlier);
      const next =
        approved.inSteps && source && sentAll(sends, results)
          ? await runAgain(tenantId, approved, source, approver, results)
          : null;
      const done: Unfinished = { tenantId, id, approver, results, journal, sends, next };
      try {
        return await finishApply(done);
      } catch (error) {
        // The writes that went out went out: say how many, and record the outcome once the
        // store is back (first call of this service), never leave it `approved` in silence.
        unfinished.set(id, done);
        throw unrecordedError(approved, done, error);
      }
    },
  };
}

/** What an approver sends with a decision. */
export interface Decision {
  readonly comment?: unknown;
  /** The step the approver saw (required from step 2 of an apply in steps). */
  readonly step?: number;
}

/**
 * A decision decides the step its approver saw: from step 2 of an apply in steps it must name it,
 * so an approve made on step 1 that arrives (late, or retried) after its re-run planned step 2
 * never approves step 2, which nobody saw.
 */
function assertStepNamed(approval: ApprovalView, step: number | undefined, verb: 'approve' | 'reject'): void {
  const current = approval.steps?.at(-1)?.step ?? 1;
  if (step === current || (step === undefined && current === 1)) return;
  throw new WardenError(
    'conflict',
    step === undefined
      ? `approval ${approval.id} is now at step ${current} (the agent's code ran again after the last step was applied); read it (GET /api/v1/approvals/${approval.id}) and ${verb} that step by naming it: {"step": ${current}}`
      : `approval ${approval.id} is at step ${current}, not step ${step}; read it (GET /api/v1/approvals/${approval.id}) and ${verb} the step it shows`,
    { field: 'step' },
  );
}

const NOT_SENT_LEASE_LAPSED =
  "this apply's lease lapsed (its replica could not renew it in time), so another replica may already have settled it as interrupted; nothing more of it is sent";

const NOT_SENT_UNAVAILABLE =
  'the database became unavailable while the plan was applied, and no write goes out before its write-ahead intent is recorded';

/** What an apply did: each step's result, and the journal that holds its trail records. */
interface Applied {
  readonly results: StepResult[];
  readonly journal: ApplyJournal | null;
}

interface Unfinished extends Applied {
  readonly tenantId: string;
  readonly id: string;
  readonly approver: Approver;
  /** The writes this apply sent (an apply in steps: its step's). */
  readonly sends: readonly PlanStep[];
  /** An apply in steps whose writes all went out: what the re-run of the code found next. */
  readonly next: NextStep | null;
}

/** What a re-run of a plan's code found after a step: more writes, none, or why it stops. */
type NextStep =
  | { readonly kind: 'next'; readonly executionId: string; readonly plan: ReplayPlan }
  | { readonly kind: 'done'; readonly executionId: string }
  | {
      readonly kind: 'stopped';
      readonly executionId: string | null;
      readonly error: { readonly code: string; readonly message: string };
    };

/**
 * An apply's audit journal that counts the write-ahead intents it committed: each is a step
 * that went out to Cloudflare (no request leaves before its intent is committed).
 */
class ApplyJournal extends AuditJournal {
  intents = 0;

  override async commit(records: Parameters<AuditJournal['commit']>[0]) {
    const events = await super.commit(records);
    this.intents += records.filter((r) => r.kind === 'upstream_request' && r.outcome === 'pending').length;
    return events;
  }
}

/** The apply ran, but its outcome could not be recorded: how many writes went out, honestly. */
function unrecordedError(approval: ApprovalView, done: Unfinished, cause: unknown): WardenError {
  const total = done.sends.length;
  const sent = done.journal?.intents ?? 0;
  const answered = done.results.filter(
    (r) => r.status !== null && done.sends.some((step) => step.seq === r.seq),
  ).length;
  const what =
    sent === total
      ? `all ${total} write(s) went out to Cloudflare`
      : `${sent} of ${total} write(s) went out to Cloudflare and ${total - sent} were not sent`;
  return new WardenError(
    'unavailable',
    `approval ${approval.id} was approved, but the database became unavailable during its apply: ${what} (each write that went out has its write-ahead intent on the audit trail under execution_id ${approval.id}; Cloudflare answered ${answered}). Its outcome (status and each step's result) is recorded as soon as the database is back; do not approve it again, plan the writes not sent anew`,
    { sent, total },
    { cause },
  );
}

function decidedError(id: string, status: ApprovalStatus): WardenError {
  if (status === 'expired') {
    return new WardenError(
      'conflict',
      `approval ${id} expired before it was decided; nothing was sent (ask the agent to plan again)`,
    );
  }
  return new WardenError('conflict', `approval ${id} is already ${status}; it is decided once`);
}

export type ApprovalService = ReturnType<typeof createApprovalService>;

/** An approval as the API and the MCP tools show it (snake_case, ISO times). */
export function approvalJson(view: ApprovalView, options: { url?: string } = {}): Record<string, unknown> {
  return {
    id: view.id,
    status: view.status,
    ...(options.url ? { url: options.url } : {}),
    identifier: view.identifier,
    connected_account_id: view.connectedAccountId,
    execution_id: view.executionId,
    plan: view.plan.map(planStepJson),
    plan_sha256: view.planSha256,
    dependent: view.dependent,
    apply_in_steps: view.inSteps,
    steps:
      view.steps?.map((step, index, all) => ({
        step: step.step,
        // Every step before the last was applied; the last is where the approval stands.
        status: index < all.length - 1 ? 'applied' : view.status,
        execution_id: step.executionId,
        plan_sha256: step.planSha256,
        sends: step.sends.map(planStepJson),
        sends_sha256: step.sendsSha256,
        requested_at: step.requestedAt,
        decided_by: step.decidedBy ? { type: step.decidedBy.type, id: step.decidedBy.id } : null,
        decided_at: step.decidedAt,
        comment: step.comment,
        results: view.results?.filter((r) => step.sends.some((s) => s.seq === r.seq)) ?? null,
        error: step.error,
      })) ?? null,
    requested_by: { type: view.requestedBy.type, id: view.requestedBy.id },
    created_at: view.createdAt.toISOString(),
    expires_at: view.expiresAt.toISOString(),
    decided_by: view.decidedBy ? { type: view.decidedBy.type, id: view.decidedBy.id } : null,
    decided_at: view.decidedAt?.toISOString() ?? null,
    comment: view.comment,
    results: view.results,
  };
}

function planStepJson(step: PlanStep): Record<string, unknown> {
  return {
    seq: step.seq,
    method: step.method,
    path: step.path,
    query: step.query,
    body: step.rawBody ?? step.body,
    // A raw text body (`rawBody`) and a JSON body that is a string read alike in `body`.
    body_encoding: step.rawBody !== null ? 'text' : step.body !== null ? 'json' : null,
    ...(step.contentType ? { content_type: step.contentType } : {}),
    operation: step.operation,
    rule: step.rule,
  };
}

/**
 * An approval as webhook events carry it: its plan as a summary (each write's method, path and
 * rule) with the plan's SHA-256 and size, never the bodies, and the per-step results without
 * Cloudflare's answers; the whole plan is at `GET /api/v1/approvals/{id}`. Every event of an
 * approval goes through the outbox, so it must not copy a plan each time.
 */
export function approvalEventJson(view: ApprovalView): Record<string, unknown> {
  const { plan: _plan, results: _results, steps: _steps, ...rest } = approvalJson(view);
  const step = view.steps?.at(-1);
  return {
    ...rest,
    // An apply in steps: which step this is and the digest of what approving it sends.
    ...(step ? { step: step.step, sends_sha256: step.sendsSha256 } : {}),
    plan_summary: view.plan.map((step) => ({
      seq: step.seq,
      method: step.method,
      path: step.path.length > EVENT_PATH_CHARS ? `${step.path.slice(0, EVENT_PATH_CHARS)}…` : step.path,
      rule: step.rule,
    })),
    plan_steps: view.plan.length,
    plan_bytes: Buffer.byteLength(canonicalJson(view.plan), 'utf8'),
    results: view.results?.map(({ result: _result, ...step }) => step) ?? null,
  };
}

/** A planned path longer than this is cut in webhook events (the API shows it whole). */
const EVENT_PATH_CHARS = 512;
