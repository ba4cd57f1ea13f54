import { createHash } from 'node:crypto';
import type { AuditJournal, AuditSubject, UpstreamFacts } from '@warden/audit';
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
import { changesOwnAccess, credentialOperation } from './credential-guard.ts';
import type { CredentialOperation } from './credential-guard.ts';
import { classifyGraphqlRequest, isGraphqlRequest } from './graphql-operation.ts';
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
   * Cloudflare's id of the vaulted token the party sends with (null: a Global API Key or an id
   * not known): set for an agent's requests, which may not edit, roll or delete that token nor
   * change its user's memberships or an account member (see `changesOwnAccess`), whatever the policy
   * allows; offboarding needs them to revoke what the agent made.
   */
  readonly ownTokenId?: string | null;
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

/** One request on its way through `send`: what each of its steps reads. */
interface Sending {
  readonly party: UpstreamParty;
  readonly journal: AuditJournal;
  /** The request as asked, on its canonical path, without its reservation. */
  readonly request: Omit<GatewayRequest, 'reservation'>;
  readonly reservation: Reservation | undefined;
  readonly op: OperationInfo | null;
  /** The credential operation it is, worked out once for policy and the answer (null: none). */
  readonly credential: CredentialOperation | null;
  /** The body as sent, or undefined for none. */
  readonly body: string | undefined;
  readonly graphql: boolean;
  /** What every record of the request says about it. */
  readonly facts: Omit<UpstreamFacts, 'query' | 'bodySha256'>;
  /** When `send` was called, for the records' durations. */
  readonly started: number;
  /** Its intent record, null until the intent is committed. */
  readonly intentId: string | null;
}

/** What a failure record needs of the request. */
type Failing = Pick<Sending, 'party' | 'journal' | 'facts' | 'started' | 'intentId'>;

/** What the request asks the budget for, but the place reserved for it. */
function budgetAskOf(sending: Sending): PartyAdmission {
  return { kind: sending.graphql ? 'graphql' : 'rest', signal: sending.request.signal };
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
    // The request on its canonical path and the facts its records carry; a path without one is refused.
    const sending = prepare(party, input, journal);
    // Policy refuses the request, holds it for approval (the code gets the plan's answer), or lets it go on.
    const held = applyPolicy(sending);
    if (held) return held;

    // Write-ahead: no request leaves Warden before its intent is committed. The budget's
    // admission (Redis) is asked for while the intent is committed (PostgreSQL), and the request
    // is sent once both are granted; an admission whose intent could not be committed is given
    // back. An admitted request waits for the commit at most, which the budget's in-flight
    // allowance covers. A place reserved for the request (Warden's own clean-up) is used only
    // once its intent is committed, so a failed commit leaves the reservation with its owner.
    const { committed, early } = await commitIntent(sending);
    // Admission once the intent is committed: the budget's answer and the party's own check.
    const granted = await admit(committed, early);
    // A caller that went away meanwhile (the code returned, the call was cancelled) sends nothing:
    // its place is given back and the intent recorded as not sent.
    await refuseIfCancelled(
      deps.budget,
      granted,
      committed.request.signal,
      (error) => fail(committed, error),
      'the request to Cloudflare',
    );

    // Sent; if no answer comes, the budget is told so and the failure recorded and thrown.
    const settle = settlement(party, granted);
    const response = await forward(committed, settle);
    // A 429 is settled before the answer is returned: its block must be in place before the code
    // can try again. A party with `settleLater` is handed the settlement of any other answer, sent
    // now, so the response does not wait for that Redis round trip; without it, every answer waits.
    if (party.settleLater && response.status !== 429) {
      party.settleLater(
        settle(response).catch((error: unknown) =>
          logger.error({ err: error }, 'rate budget: recording an answered request failed'),
        ),
      );
    } else {
      await settle(response);
    }
    // A 401: the credential may have been revoked at Cloudflare.
    if (response.status === 401) party.onUnauthorized?.();
    // A credential an agent creates is recorded (to be revoked on offboarding) and its secret
    // withheld unless the tenant policy reveals it, before any front door sees the response. The
    // request's outcome is recorded after that: until then it counts as in flight (offboarding
    // waits for it before it revokes what the account made).
    const guarded = guardCredentials(committed, response);
    if (!(guarded instanceof Promise)) {
      recordOutcome(committed, response);
      return guarded;
    }
    try {
      return await guarded;
    } finally {
      recordOutcome(committed, response);
    }
  }

  /**
   * Builds what the steps of `send` read: policy sees, the trail records and Cloudflare gets one
   * canonical spelling of the path. A path that has none is refused (recorded, thrown).
   */
  function prepare(party: UpstreamParty, input: GatewayRequest, journal: AuditJournal): Sending {
    const started = clock.now().getTime();
    const action = input.action ?? DEFAULT_ACTION;
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
    const credential = party.policy && typeof canonical === 'string' ? credentialOperation(request) : null;
    const prepared = {
      party,
      journal,
      request,
      reservation,
      op,
      credential,
      body,
      facts,
      started,
      intentId: null,
    };
    if (typeof canonical !== 'string') fail(prepared, canonical);
    return { ...prepared, graphql: request.method === 'POST' && isGraphqlRequest(request) };
  }

  /**
   * Records the request's failure as its outcome (of its intent once that is committed; without
   * one for a request refused before) and throws the error.
   */
  function fail(sending: Failing, error: WardenError): never {
    sending.journal.later([
      upstreamFailureRecord(sending.party.subject, sending.facts, sending.intentId, {
        error,
        durationMs: clock.now().getTime() - sending.started,
      }),
    ]);
    throw error;
  }

  /**
   * The party's policy, if it has one: refuses the request (recorded, thrown), or holds a write
   * for approval in the party's plan and returns what the code sees for it. Null: the request goes on.
   */
  function applyPolicy(sending: Sending): CloudflareResponse | null {
    const { party, request, op } = sending;
    if (!party.policy) return null;
    const graphqlQuery = isGraphqlRequest(request)
      ? classifyGraphqlRequest(request).access === 'read'
      : undefined;
    const asked = {
      method: request.method,
      path: request.path,
      credential: sending.credential,
      ...(graphqlQuery !== undefined ? { graphqlQuery } : {}),
    };
    if (
      party.ownTokenId !== undefined &&
      isWrite(asked) &&
      changesOwnAccess(request.path, party.ownTokenId)
    ) {
      return fail(
        sending,
        new WardenError(
          'policy_denied',
          `${request.method} ${request.path} may change the access of the token Warden holds for this account (the token, its user's memberships, an account member), which offboarding needs to revoke what agents made; make such changes in the Cloudflare dashboard`,
          { rule: 'own_token', scope: 'tenant' },
        ),
      );
    }
    const decision = evaluatePolicy(party.policy.tenant, party.policy.identity, asked);
    if (!decision.allowed) return fail(sending, policyRefusal(decision, request));
    const holding = decision.approval && !party.approved ? decision.approval : null;
    if (holding && !party.plan) {
      return fail(
        sending,
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
        if (isWardenError(error)) return fail(sending, error);
        throw error;
      }
    }
    return null;
  }

  /**
   * Commits the request's intent, asking the budget for its admission meanwhile (`early`; not
   * when a place is reserved for it). If the commit fails, that admission is given back.
   */
  async function commitIntent(sending: Sending): Promise<{ committed: Sending; early: BudgetAsk | null }> {
    const { party, request, body } = sending;
    const early = sending.reservation ? null : askBudget(deps.budget, party, budgetAskOf(sending));
    let intent;
    try {
      [intent] = await sending.journal.commit([
        upstreamIntentRecord(party.subject, {
          ...sending.facts,
          query: request.query ?? null,
          bodySha256: body === undefined ? null : createHash('sha256').update(body, 'utf8').digest('hex'),
        }),
      ]);
    } catch (error) {
      if (early) await giveBack(deps.budget, early);
      throw error;
    }
    return { committed: { ...sending, intentId: intent?.id ?? null }, early };
  }

  /**
   * The committed request's admission: the budget's answer (asked early, or now with the place
   * reserved for it) and the party's own check; a refusal is recorded as not sent and thrown.
   */
  async function admit(committed: Sending, early: BudgetAsk | null): Promise<Admitted> {
    const { party, reservation } = committed;
    // Asked early, a request may have been held back for a probe (the request learning
    // Cloudflare's count after a pause) that was itself admitted early and still waited for its
    // commit, so it could not be answered within the wait: it asks again now that it could go.
    let budgeted = early ?? askBudget(deps.budget, party, { ...budgetAskOf(committed), reservation });
    const earlyAnswer = early ? await early : null;
    if (
      earlyAnswer?.status === 'fulfilled' &&
      !earlyAnswer.value.allowed &&
      earlyAnswer.value.reason === 'probe'
    ) {
      budgeted = askBudget(deps.budget, party, budgetAskOf(committed));
    }
    // The party's own check (is the account still usable?) comes after the commit, right before sending.
    return admitParty(deps.budget, party, budgeted, (error) => fail(committed, error));
  }

  /** Tells the budget what Cloudflare answered (its headers; a 429 blocks on every replica). */
  function settlement(party: UpstreamParty, granted: Admitted) {
    return async (answer: UpstreamAnswer | null): Promise<void> => {
      if (party.principal === null && party.deferCharge) party.deferCharge(granted, answer);
      else await deps.budget.observe(granted, answer);
    };
  }

  /**
   * Sends the request to Cloudflare. If no answer comes, the budget is told so before the
   * failure is recorded and thrown.
   */
  async function forward(
    committed: Sending,
    settle: (answer: UpstreamAnswer | null) => Promise<void>,
  ): Promise<CloudflareResponse> {
    try {
      return await deps.cloudflare.send(committed.party.credential, committed.request);
    } catch (error) {
      await settle(null);
      return fail(
        committed,
        isWardenError(error) ? error : new WardenError('upstream_error', 'Cloudflare request failed'),
      );
    }
  }

  /** Records Cloudflare's answer as the outcome of the request's intent. */
  function recordOutcome(committed: Sending, response: CloudflareResponse): void {
    committed.journal.later([
      upstreamOutcomeRecord(committed.party.subject, committed.facts, committed.intentId, {
        outcome: response.success ? 'success' : response.status === 429 ? 'rate_limited' : 'error',
        error: response.success ? null : upstreamError(response),
        status: response.status,
        cfRay: response.cfRay,
        durationMs: clock.now().getTime() - committed.started,
        responseBytes: response.responseBytes,
      }),
    ]);
  }

  /** The response as the code gets it: guarded when the party's request mints a credential. */
  function guardCredentials(
    committed: Sending,
    response: CloudflareResponse,
  ): CloudflareResponse | Promise<CloudflareResponse> {
    const { party, request, journal } = committed;
    const credentialOp = committed.credential;
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
      request,
      response,
    );
  }

  function clientFor(party: UpstreamParty, journal: AuditJournal, action: string): CloudflareClient {
    return {
      baseUrl: deps.cloudflare.baseUrl,
      // Warden's own follow-up requests (undoing or revoking what an agent made) are not the
      // agent's: no tenant policy applies to them, nor the revocation check that stops its code.
      send: (_credential, request) =>
        send({ ...party, policy: null, admit: undefined }, { ...request, action }, journal),
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
