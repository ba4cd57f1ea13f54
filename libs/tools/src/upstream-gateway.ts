import { createHash } from 'node:crypto';
import type { AuditJournal, AuditSubject } from '@warden/audit';
import { upstreamFailureRecord, upstreamIntentRecord, upstreamOutcomeRecord } from '@warden/audit';
import type { Clock, Logger } from '@warden/core';
import { WardenError, isWardenError, noopLogger, systemClock, unavailable } from '@warden/core';
import type {
  CloudflareClient,
  CloudflareCredential,
  CloudflareRequest,
  CloudflareResponse,
} from '@warden/cloudflare';
import type {
  Admitted,
  BudgetKind,
  BudgetSpec,
  Refusal,
  Reservation,
  UpstreamAnswer,
  UpstreamBudget,
} from '@warden/ratelimit';
import { rateLimitedError } from '@warden/ratelimit';
import { canonicalizePath } from './canonical-path.ts';
import { credentialOperation } from './credential-guard.ts';
import { classifyGraphqlBody, isGraphqlRequest } from './graphql-operation.ts';
import { guardCredentialResponse } from './minted-credentials.ts';
import type { MintedCredentialStore } from './minted-credentials.ts';
import { evaluatePolicy, isWrite, policyRefusal } from './policy.ts';
import type { Policy } from './policy.ts';
import type { OperationInfo, SpecLookup } from './ports.ts';

/**
 * Whose credential an upstream request carries, for whom, and under which rules. Built by the
 * operation that sends (an execution, a verification, an offboarding) and handed to the gateway
 * with every request.
 */
export interface UpstreamParty {
  readonly tenantId: string;
  /** Who acts and on whose behalf, for the audit records of each request. */
  readonly subject: AuditSubject;
  readonly credential: CloudflareCredential;
  /**
   * The rate budget's key: the Cloudflare user or account the request counts against. Null
   * while it is not known (a credential being verified): only the egress budget applies, and
   * each request is handed to `deferCharge` to be charged once verification has found it.
   */
  readonly principal: string | null;
  readonly deferCharge?: (admission: Admitted, answer: UpstreamAnswer | null) => void;
  readonly budget: BudgetSpec;
  /** The tenant's and identity's policy; null for Warden's own requests (verification, revocation). */
  readonly policy: { readonly tenant: Policy; readonly identity: Policy } | null;
  /**
   * Checked right before the request is sent (after policy and budget): throws a `WardenError`
   * to refuse it, e.g. when the account was revoked while an execution ran.
   */
  readonly admit?: () => Promise<void>;
  /** Cloudflare answered 401: the credential may have been revoked at Cloudflare. */
  readonly onUnauthorized?: () => void;
  /**
   * Takes the budget's settlement of an answer that is not a 429 (Cloudflare's rate headers
   * recorded in the window), so the response reaches the code without waiting for that Redis
   * round trip; the operation waits for what it was handed before it ends. The settlement is
   * sent before the response is returned, so a request the code sends next is admitted after
   * it on the same Redis connection. A 429 is always settled first: its block must be in place
   * before the code can try again. Without it, every answer is settled before `send` returns.
   */
  readonly settleLater?: (settlement: Promise<void>) => void;
  /**
   * Where writes that policy holds for approval are recorded instead of being sent (an
   * execution's plan). Without one, such a write is refused: no one could approve it.
   */
  readonly plan?: PlanSink;
  /**
   * The request is a step of a plan a person approved: rules that hold writes for approval let it
   * through; deny rules (the policy as it stands now) still refuse it.
   */
  readonly approved?: boolean;
  /**
   * Every write goes to `plan`, also one no approve rule holds (its `rule` then null): agent code
   * re-run to apply an approved plan in steps never sends a write itself.
   */
  readonly holdEveryWrite?: boolean;
}

/** A write held for approval: exactly what would have been sent, on its canonical path. */
export interface HeldWrite {
  readonly method: string;
  readonly path: string;
  readonly query: CloudflareRequest['query'] | null;
  /** The JSON body, or null (with `rawBody` for a non-JSON upload). */
  readonly body: unknown;
  readonly rawBody?: string;
  readonly contentType?: string;
  readonly operation: OperationInfo | null;
  /**
   * The policy rule that holds it, e.g. `approve-writes` (tenant); null when no rule does and it
   * is held only because the party holds every write (`holdEveryWrite`).
   */
  readonly rule: string | null;
}

export interface PlanSink {
  /**
   * Records the write and returns what the code sees for it (`PENDING_APPROVAL_RESPONSE`, or
   * the recorded answer of a write already applied); throws a `WardenError` to refuse it (the
   * plan outgrew its limits, or a re-run wrote something else than what was applied).
   */
  hold(write: HeldWrite): CloudflareResponse;
}

/** A successful answer Warden gives agent code itself, without Cloudflare (held or replayed writes). */
export function wardenAnswer(status: number, result: unknown): CloudflareResponse {
  return {
    status,
    success: true,
    result,
    errors: [],
    messages: [],
    cfRay: null,
    retryAfterSeconds: null,
    rateLimit: null,
    rateLimitPolicy: null,
    responseBytes: 0,
  };
}

/** What agent code sees for a held write, so it can go on planning. */
export const PENDING_APPROVAL_RESPONSE: CloudflareResponse & { readonly pending_approval: true } = {
  ...wardenAnswer(202, null),
  pending_approval: true,
};

/** A Cloudflare answer that is not a success, as the trail and results record it. */
export function upstreamError(response: CloudflareResponse): { code: string; message: string } {
  return {
    code: `http_${response.status}`,
    message:
      response.errors
        .map((e) => e.message)
        .join('; ')
        .slice(0, 500) || `HTTP ${response.status}`,
  };
}

export interface GatewayRequest extends CloudflareRequest {
  /** The audit action: `cloudflare.request` for agent code, `cloudflare.verify`, `cloudflare.token_delete`. */
  readonly action?: string;
  /**
   * The place `UpstreamBudget.reserve` took for this request (Warden's own clean-up, such as a
   * tail's delete): admitted with it, not against what is left of the window. Not used if the
   * request is refused before admission; the caller releases it then (`budget.release`).
   */
  readonly reservation?: Reservation;
}

export interface UpstreamGateway {
  /**
   * Sends one request with the party's credential: policy, rate budget, admission, then a
   * write-ahead intent record committed to the journal — if it cannot be committed, nothing is
   * sent — then the request, then its outcome record. Refusals are recorded too and thrown as
   * `WardenError`s; a response of any status is returned.
   */
  send(party: UpstreamParty, request: GatewayRequest, journal: AuditJournal): Promise<CloudflareResponse>;
  /**
   * A Cloudflare client whose every request goes through `send`, recorded as `action`: for code
   * that speaks `CloudflareClient` (credential verification, revoking minted credentials).
   */
  clientFor(party: UpstreamParty, journal: AuditJournal, action: string): CloudflareClient;
  /** The spec operation of a request, when the spec knows it. */
  operation(method: string, path: string): OperationInfo | null;
}

export interface UpstreamGatewayDeps {
  readonly cloudflare: CloudflareClient;
  readonly budget: UpstreamBudget;
  readonly spec: SpecLookup;
  /** Credentials agents create (when the tenant policy allows it), recorded before they see them. */
  readonly mintedCredentials: MintedCredentialStore;
  readonly logger?: Logger;
  readonly clock?: Clock;
}

const DEFAULT_ACTION = 'cloudflare.request';

function bodyOf(request: CloudflareRequest): string | undefined {
  if (request.rawBody !== undefined) return request.rawBody;
  if (request.body !== undefined) return JSON.stringify(request.body);
  return undefined;
}

export function createUpstreamGateway(deps: UpstreamGatewayDeps): UpstreamGateway {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? noopLogger;

  function operation(method: string, path: string): OperationInfo | null {
    return deps.spec.findOperation(method, path);
  }

  async function send(
    party: UpstreamParty,
    input: GatewayRequest,
    journal: AuditJournal,
  ): Promise<CloudflareResponse> {
    const started = clock.now().getTime();
    const action = input.action ?? DEFAULT_ACTION;
    // Policy sees, the trail records and Cloudflare gets one canonical spelling of the path.
    let canonical: string | WardenError;
    try {
      canonical = canonicalizePath(input.path);
    } catch (error) {
      if (!isWardenError(error)) throw error;
      canonical = error;
    }
    const { reservation, ...asked } = input;
    const request = { ...asked, path: typeof canonical === 'string' ? canonical : input.path };
    const op = typeof canonical === 'string' ? operation(request.method, request.path) : null;
    const body = bodyOf(request);
    const facts = {
      method: request.method,
      path: request.path,
      pathTemplate: op?.pathTemplate ?? null,
      action,
      requestBytes: body === undefined ? 0 : Buffer.byteLength(body),
    };
    /** A request refused before it could be sent: recorded as an outcome without an intent. */
    const refuse = (error: WardenError): never => {
      journal.later([
        upstreamFailureRecord(party.subject, facts, null, {
          error,
          durationMs: clock.now().getTime() - started,
        }),
      ]);
      throw error;
    };

    if (typeof canonical !== 'string') refuse(canonical);
    const graphql = request.method === 'POST' && isGraphqlRequest(request);
    if (party.policy) {
      const graphqlQuery = graphql ? classifyGraphqlBody(request.body).access === 'read' : undefined;
      const asked = {
        method: request.method,
        path: request.path,
        ...(graphqlQuery !== undefined ? { graphqlQuery } : {}),
      };
      const decision = evaluatePolicy(party.policy.tenant, party.policy.identity, asked);
      if (!decision.allowed) return refuse(policyRefusal(decision, request));
      const holding = decision.approval && !party.approved ? decision.approval : null;
      if (holding && !party.plan) {
        return refuse(
          new WardenError(
            'policy_denied',
            `${request.method} ${request.path} needs a person's approval (${holding.scope} rule ${holding.rule}), which this request cannot ask for`,
            { rule: holding.rule, scope: holding.scope },
          ),
        );
      }
      if (party.plan && (holding || (party.holdEveryWrite && isWrite(asked)))) {
        try {
          return party.plan.hold({
            method: request.method,
            path: request.path,
            query: request.query ?? null,
            body: request.body ?? null,
            ...(request.rawBody !== undefined ? { rawBody: request.rawBody } : {}),
            ...(request.contentType !== undefined ? { contentType: request.contentType } : {}),
            operation: op,
            rule: holding?.rule ?? null,
          });
        } catch (error) {
          // The plan outgrew its limits, or a re-run wrote other than what was applied: refused, and recorded.
          if (isWardenError(error)) return refuse(error);
          throw error;
        }
      }
    }

    // Write-ahead: no request leaves Warden before its intent is committed. The budget's
    // admission (Redis) is asked for while the intent is committed (PostgreSQL), and the request
    // is sent once both are granted; an admission whose intent could not be committed is given
    // back. An admitted request waits for the commit at most, which the budget's in-flight
    // allowance covers. A place reserved for the request (Warden's own clean-up) is used only
    // once its intent is committed, so a failed commit leaves the reservation with its owner.
    const budgetAsk = { kind: graphql ? ('graphql' as const) : ('rest' as const), signal: request.signal };
    const early = reservation ? null : askBudget(deps.budget, party, budgetAsk);
    let intent;
    try {
      [intent] = await journal.commit([
        upstreamIntentRecord(party.subject, {
          ...facts,
          query: request.query ?? null,
          bodySha256: body === undefined ? null : createHash('sha256').update(body, 'utf8').digest('hex'),
        }),
      ]);
    } catch (error) {
      if (early) await giveBack(deps.budget, early);
      throw error;
    }
    const intentId = intent?.id ?? null;
    /** Recorded and sent nothing: the intent's outcome says why. */
    const notSent = (error: WardenError): never => {
      journal.later([
        upstreamFailureRecord(party.subject, facts, intentId, {
          error,
          durationMs: clock.now().getTime() - started,
        }),
      ]);
      throw error;
    };

    // Asked early, a request may have been held back for a probe (the request learning
    // Cloudflare's count after a pause) that was itself admitted early and still waited for its
    // commit, so it could not be answered within the wait: it asks again now that it could go.
    let budgeted = early ?? askBudget(deps.budget, party, { ...budgetAsk, reservation });
    const earlyAnswer = early ? await early : null;
    if (
      earlyAnswer?.status === 'fulfilled' &&
      !earlyAnswer.value.allowed &&
      earlyAnswer.value.reason === 'probe'
    ) {
      budgeted = askBudget(deps.budget, party, budgetAsk);
    }
    // The party's own check (is the account still usable?) comes after the commit, right before sending.
    const granted = await admitParty(deps.budget, party, budgeted, notSent);
    /** Tells the budget what Cloudflare answered (its headers; a 429 blocks on every replica). */
    const settle = async (answer: UpstreamAnswer | null): Promise<void> => {
      if (party.principal === null && party.deferCharge) party.deferCharge(granted, answer);
      else await deps.budget.observe(granted, answer);
    };

    await refuseIfCancelled(deps.budget, granted, request.signal, notSent, 'the request to Cloudflare');
    let response: CloudflareResponse;
    try {
      response = await deps.cloudflare.send(party.credential, request);
    } catch (error) {
      await settle(null);
      const wrapped = isWardenError(error)
        ? error
        : new WardenError('upstream_error', 'Cloudflare request failed');
      journal.later([
        upstreamFailureRecord(party.subject, facts, intentId, {
          error: wrapped,
          durationMs: clock.now().getTime() - started,
        }),
      ]);
      throw wrapped;
    }
    if (party.settleLater && response.status !== 429) {
      party.settleLater(
        settle(response).catch((error: unknown) =>
          logger.error({ err: error }, 'rate budget: recording an answered request failed'),
        ),
      );
    } else {
      await settle(response);
    }
    if (response.status === 401) party.onUnauthorized?.();
    journal.later([
      upstreamOutcomeRecord(party.subject, facts, intentId, {
        outcome: response.success ? 'success' : response.status === 429 ? 'rate_limited' : 'error',
        error: response.success ? null : upstreamError(response),
        status: response.status,
        cfRay: response.cfRay,
        durationMs: clock.now().getTime() - started,
        responseBytes: response.responseBytes,
      }),
    ]);
    // A credential an agent creates is recorded (to be revoked on offboarding) and its secret
    // withheld unless the tenant policy reveals it, before any front door sees the response.
    const credentialOp = party.policy ? credentialOperation(request) : null;
    if (!credentialOp || !party.policy) return response;
    return guardCredentialResponse(
      {
        store: deps.mintedCredentials,
        cloudflare: clientFor(party, journal, 'cloudflare.minted_credential_undo'),
        logger,
      },
      {
        tenantId: party.tenantId,
        identifier: party.subject.identifier ?? '',
        connectedAccountId: party.subject.connectedAccountId ?? '',
        executionId: party.subject.executionId ?? null,
        credential: party.credential,
        policy: party.policy.tenant.credential_operations,
      },
      credentialOp,
      request.path,
      response,
    );
  }

  function clientFor(party: UpstreamParty, journal: AuditJournal, action: string): CloudflareClient {
    return {
      baseUrl: deps.cloudflare.baseUrl,
      // Warden's own follow-up requests are not the agent's: no tenant policy applies to them.
      send: (_credential, request) => send({ ...party, policy: null }, { ...request, action }, journal),
    };
  }

  return { send, operation, clientFor };
}

/** What one request asks the budget for: its kind, when to stop waiting, a place reserved for it. */
export interface PartyAdmission {
  readonly kind: BudgetKind;
  readonly signal?: AbortSignal | undefined;
  readonly reservation?: Reservation | undefined;
}

/** The rate budget's answer to one request, asked for ahead of its admission (never rejects). */
export type BudgetAsk = Promise<PromiseSettledResult<Admitted | Refusal>>;

/** Asks the rate budget for one request of `party` now; `admitParty` takes the answer. */
export function askBudget(budget: UpstreamBudget, party: UpstreamParty, request: PartyAdmission): BudgetAsk {
  const { kind, signal, reservation } = request;
  return budget
    .admit({
      principal: party.principal,
      tenantId: party.tenantId,
      kind,
      spec: party.budget,
      ...(signal ? { signal } : {}),
      ...(reservation ? { reservation } : {}),
    })
    .then(
      (value) => ({ status: 'fulfilled', value }),
      (reason: unknown) => ({ status: 'rejected', reason }),
    );
}

/** Gives back the place a budget answer granted, for a request that will not be sent. */
export async function giveBack(budget: UpstreamBudget, asked: BudgetAsk): Promise<void> {
  const answer = await asked;
  if (answer.status === 'fulfilled' && answer.value.allowed)
    await budget.release(answer.value).catch(() => {});
}

/**
 * The last step before a request leaves, in every gateway: a caller that went away (the code
 * returned, the call was cancelled) while the intent was committed or the budget asked would not
 * send it either (the client refuses an aborted signal), so its place is given back and the
 * intent recorded as not sent, rather than charged as a request sent without an answer.
 */
export async function refuseIfCancelled(
  budget: UpstreamBudget,
  granted: Admitted,
  signal: AbortSignal | undefined,
  notSent: (error: WardenError) => never,
  what: string,
): Promise<void> {
  if (!signal?.aborted) return;
  await budget.release(granted).catch(() => {});
  notSent(new WardenError('upstream_error', `${what} was cancelled before it was sent`));
}

/**
 * A party's admission for one upstream request: its own check (`party.admit`, e.g. the account
 * still active) and the rate budget's answer (`askBudget`, asked for before or together with
 * it). Whatever refuses goes to `notSent` (which records the request as not sent and throws); a
 * budget place taken for a refused party is given back. The one admission every gateway (API,
 * R2) goes through.
 */
export async function admitParty(
  budget: UpstreamBudget,
  party: UpstreamParty,
  asked: BudgetAsk,
  notSent: (error: WardenError) => never,
): Promise<Admitted> {
  const [admitted, budgeted] = await Promise.all([
    Promise.resolve()
      .then(() => party.admit?.())
      .then(
        () => ({ status: 'fulfilled' }) as const,
        (reason: unknown) => ({ status: 'rejected', reason }) as const,
      ),
    asked,
  ]);
  const admission = budgeted.status === 'fulfilled' && budgeted.value.allowed ? budgeted.value : null;
  if (admitted.status === 'rejected') {
    if (admission) await budget.release(admission);
    const error = admitted.reason;
    notSent(isWardenError(error) ? error : unavailable('the connected account', error));
  }
  if (budgeted.status === 'rejected') {
    const error = budgeted.reason;
    notSent(isWardenError(error) ? error : unavailable('the rate budget', error));
  }
  const granted = (budgeted as PromiseFulfilledResult<Admitted | Refusal>).value;
  if (!granted.allowed) return notSent(rateLimitedError(granted));
  return granted;
}
