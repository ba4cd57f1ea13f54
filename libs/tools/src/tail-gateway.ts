import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AuditJournal } from '@warden/audit';
import { outcomeOf, upstreamFailureRecord, upstreamIntentRecord, upstreamOutcomeRecord } from '@warden/audit';
import type { Clock } from '@warden/core';
import { WardenError, isWardenError, systemClock, unavailable } from '@warden/core';
import { credentialScrubber, r2Secrets } from '@warden/cloudflare';
import type {
  CloudflareResponse,
  R2Credentials,
  TailApiFilter,
  TailCollectOptions,
  TailCollection,
  TailFilterMessage,
} from '@warden/cloudflare';
import { canonicalizePath } from './canonical-path.ts';
import { evaluatePolicy, policyRefusal } from './policy.ts';
import type { Policy, PolicyDecision } from './policy.ts';
import type { TailRequest } from './ports.ts';
import { cloudflareRateLimited, rateLimitedError } from '@warden/ratelimit';
import type { Reservation, UpstreamBudget } from '@warden/ratelimit';
import type { UpstreamGateway, UpstreamParty } from './upstream-gateway.ts';

/** Default bound of one event in a tail's result: longer ones are cut, with a marker. */
export const DEFAULT_TAIL_EVENT_BYTES = 4096;

const TAILS_TEMPLATE = '/accounts/{account_id}/workers/scripts/{script_name}/tails';
const SESSION_TEMPLATE = `${TAILS_TEMPLATE}/{id}`;

/**
 * How long past its `seconds` a tail's reserved delete holds its place in the window: the create
 * (up to the upstream timeout), the connect and the delete itself. Past it the place still counts
 * for a window, as a request sent then.
 */
const DELETE_HOLD_MARGIN_MS = 60_000;

/** A delete Cloudflare answers with 429 is sent once more when its Retry-After is at most this. */
export const TAIL_DELETE_RETRY_MAX_SECONDS = 5;

export interface TailGatewayDeps {
  /** Creates and deletes tails: policy-free sends with the budget, admission and trail of every request. */
  readonly gateway: UpstreamGateway;
  /**
   * The API budget the gateway admits with: a tail reserves its delete's place before the create,
   * so the delete is admitted whatever the code spends while the tail runs.
   */
  readonly budget: UpstreamBudget;
  /** Connects to a session's WebSocket and collects its events (`collectTail`). */
  readonly collect: (options: TailCollectOptions) => Promise<TailCollection>;
  /** Largest event a result carries (UTF-8 bytes); longer ones are cut with a marker. */
  readonly maxEventBytes: number;
  /**
   * The origins a session's WebSocket may be on (`wss://tail.developers.workers.dev`), from the
   * configuration: a create answered with a URL anywhere else is refused, nothing connects to it,
   * and the tail is deleted.
   */
  readonly socketOrigins: readonly string[];
  readonly clock?: Clock;
}

/** What one `tail.worker` runs with besides its party and request. */
export interface TailCall {
  readonly journal: AuditJournal;
  /**
   * Aborted when the execution ends (its code returned, it was killed or cancelled) or loses its
   * access: no tail is created after that, and a running one ends and is deleted.
   */
  readonly signal: AbortSignal;
  /** The R2 access key pair vaulted on the account: events are scrubbed of its secret too. */
  readonly r2AccessKey: R2Credentials | null;
}

export interface TailGateway {
  /**
   * One `tail.worker` of agent code: policy on the tails path, the tail created through the API
   * gateway (write-ahead intent, the API budget), the session itself recorded write-ahead (its
   * events and duration on the outcome), events scrubbed of every secret the call holds (the
   * credential, R2's secret access keys) and cut to a bound, and the tail ALWAYS deleted, whether
   * collecting ended by time, event cap, error or `call.signal`. Resolves to what the sandbox
   * sees; refusals reject with a `WardenError`.
   */
  worker(party: UpstreamParty, request: TailRequest, call: TailCall): Promise<unknown>;
}

/**
 * A tail reads a Worker's logs and changes nothing in it, so a read-only identity may tail:
 * `read_only` and `deny_writes_by_default` let it through and approve rules do not hold it. It
 * is still the POST that creates a tail session, so a deny rule on GET or on POST of the tails
 * path (or a pattern covering it) refuses it.
 */
export function tailDecision(tenant: Policy, identity: Policy, path: string): PolicyDecision {
  // Not the credential operation a tail created with `cloudflare.request` is (its WebSocket URL
  // handed to the agent): `tail.worker` keeps the URL in Warden and always deletes the tail, so
  // only the rules apply (credential: null).
  const asRead = evaluatePolicy(tenant, identity, { method: 'GET', path, credential: null });
  if (!asRead.allowed) return asRead;
  const rulesOnly = (policy: Policy): Policy => ({
    ...policy,
    read_only: false,
    deny_writes_by_default: false,
  });
  const asCreate = evaluatePolicy(rulesOnly(tenant), rulesOnly(identity), {
    method: 'POST',
    path,
    credential: null,
  });
  return asCreate.allowed ? { allowed: true } : asCreate;
}

/** The filter list the tail worker applies (wrangler's translation of its CLI filters). */
export function tailFilters(filters: TailRequest['filters']): TailFilterMessage {
  const list: TailApiFilter[] = [];
  if (filters.sampleRate !== undefined) list.push({ sampling_rate: filters.sampleRate });
  const outcomes = new Set(filters.outcome ?? []);
  for (const status of filters.status ?? []) {
    if (status === 'error')
      for (const o of ['exception', 'exceededCpu', 'exceededMemory', 'unknown']) outcomes.add(o);
    else outcomes.add(status);
  }
  if (outcomes.size > 0) list.push({ outcome: [...outcomes] });
  if (filters.method) list.push({ method: filters.method });
  if (filters.query !== undefined) list.push({ query: filters.query });
  return { filters: list };
}

interface CreatedTail {
  readonly id: string;
  readonly url: string;
}

export function createTailGateway(deps: TailGatewayDeps): TailGateway {
  const clock = deps.clock ?? systemClock;

  /** What Cloudflare answered to the create, as the tail it made or the error the code sees. */
  function created(
    script: string,
    accountId: string,
    path: string,
    response: CloudflareResponse,
  ): CreatedTail {
    if (response.status === 429) throw cloudflareRateLimited(response, 'tail.worker');
    const reason = response.errors.map((e) => e.message).join('; ');
    if (response.status === 404) {
      throw new WardenError('not_found', `tail.worker: no Worker named "${script}" in account ${accountId}`);
    }
    if (response.status === 403) {
      const needed = deps.gateway.operation('POST', path)?.permissions ?? [];
      throw new WardenError(
        'forbidden',
        `tail.worker: Cloudflare refused to start a tail of "${script}" (${reason || 'forbidden'}): the token needs ${needed.length > 0 ? `one of these permissions: ${needed.join(', ')}` : 'a Workers Tail permission'}. Grant it in the Cloudflare dashboard (My Profile > API Tokens) and retry.`,
        { permissions: needed },
      );
    }
    if (!response.success) {
      throw new WardenError(
        'upstream_error',
        `tail.worker: Cloudflare answered ${response.status} to starting a tail${reason ? ` (${reason.slice(0, 300)})` : ''}`,
        { status: response.status },
      );
    }
    const result = response.result as { id?: unknown; url?: unknown } | null;
    if (
      typeof result?.id !== 'string' ||
      !/^[A-Za-z0-9_-]{1,64}$/.test(result.id) ||
      typeof result.url !== 'string'
    ) {
      throw new WardenError(
        'upstream_error',
        'tail.worker: Cloudflare answered the tail create without an id and url',
      );
    }
    return { id: result.id, url: result.url };
  }

  /**
   * Why Warden will not connect to the session URL Cloudflare answered, or null: it must be on
   * one of the configured origins (scheme, host and port), with no user name or password in it.
   * Anything else (another host, `ws:` where `wss:` is configured, `http:`, `file:`) could point
   * the connector at an internal host.
   */
  function socketRefusal(url: string): WardenError | null {
    let origin = 'null';
    try {
      const parsed = new URL(url);
      if (parsed.username === '' && parsed.password === '') origin = parsed.origin;
    } catch {
      // Not a URL: refused below.
    }
    if (origin !== 'null' && deps.socketOrigins.includes(origin)) return null;
    return new WardenError(
      'upstream_error',
      `tail.worker: Cloudflare answered a tail WebSocket URL ${origin === 'null' ? 'that is not a plain ws:// or wss:// URL' : `on ${origin.slice(0, 200)}`}, which is not an allowed tail host (${deps.socketOrigins.join(', ')}); nothing was connected and the tail is deleted`,
    );
  }

  async function worker(party: UpstreamParty, request: TailRequest, call: TailCall): Promise<unknown> {
    const { journal, signal } = call;
    const started = clock.now().getTime();
    if (request.accountId === null) {
      throw new WardenError('invalid_request', 'tail.worker: accountId is required', { field: 'accountId' });
    }
    const path = canonicalizePath(`/accounts/${request.accountId}/workers/scripts/${request.script}/tails`);
    const filters = tailFilters(request.filters);
    const createFacts = {
      method: 'POST',
      path,
      pathTemplate: TAILS_TEMPLATE,
      action: 'cloudflare.tail_create',
    };
    /** Refused before anything was sent: an outcome without an intent. */
    const refuse = (error: WardenError): never => {
      journal.later([
        upstreamFailureRecord(party.subject, { ...createFacts, requestBytes: 0 }, null, {
          error,
          durationMs: clock.now().getTime() - started,
        }),
      ]);
      throw error;
    };
    if (party.policy) {
      const decision = tailDecision(party.policy.tenant, party.policy.identity, path);
      if (!decision.allowed) refuse(policyRefusal(decision, { method: 'POST', path }));
    }
    // A tail that could be created but not deleted would outlive the call: its delete's place in
    // the API window is reserved before the create (no egress slot is held meanwhile), so requests
    // the code sends while the tail runs cannot use it up. No reservation: no tail.
    let reservation: Reservation | null = null;
    if (party.principal !== null) {
      let reserved;
      try {
        reserved = await deps.budget.reserve({
          principal: party.principal,
          kind: 'rest',
          spec: party.budget,
          holdMs: request.seconds * 1000 + DELETE_HOLD_MARGIN_MS,
        });
      } catch (error) {
        return refuse(isWardenError(error) ? error : unavailable('the rate budget', error));
      }
      if (!reserved.allowed) {
        const error = rateLimitedError(reserved);
        refuse(
          new WardenError(
            'rate_limited',
            `tail.worker: a tail needs two API requests (create and delete), and ${reserved.message}`,
            error.details,
          ),
        );
      }
      reservation = reserved as Reservation;
    }
    const unreserve = async (): Promise<void> => {
      if (reservation) await deps.budget.release(reservation).catch(() => {});
    };
    let tail: CreatedTail;
    try {
      // The execution ended while the tail was being checked: none is created after it.
      if (signal.aborted) {
        refuse(
          new WardenError(
            'conflict',
            'tail.worker: the execution ended (its code returned, or it was cancelled or revoked) before the tail was created; nothing was sent',
          ),
        );
      }
      // Policy was applied above, as a tail's own rule; the gateway sends with the party's budget,
      // admission and trail. Not cancelled by `signal`: a create Cloudflare took must be answered,
      // or the tail it made could not be deleted (it is, below, once the create is answered).
      const response = await deps.gateway.send(
        { ...party, policy: null },
        { method: 'POST', path, body: filters, action: 'cloudflare.tail_create' },
        journal,
      );
      tail = created(request.script, request.accountId, path, response);
    } catch (error) {
      // No tail to delete: its reserved place goes back.
      await unreserve();
      throw error;
    }
    const sessionPath = `${path}/${tail.id}`;

    /**
     * Warden's own clean-up: no policy, and no admission check either (a token revoked while the
     * tail ran must not leave the tail behind); the trail applies as always, and the budget
     * through the place reserved before the create. A 429 from Cloudflare with a Retry-After of
     * a few seconds is waited out and the delete sent once more (admitted like any request);
     * otherwise the tail expires at Cloudflare on its own.
     */
    const deleteTail = async (): Promise<boolean> => {
      const send = (held: Reservation | null) =>
        deps.gateway.send(
          { ...party, policy: null, admit: async () => {} },
          {
            method: 'DELETE',
            path: sessionPath,
            action: 'cloudflare.tail_delete',
            ...(held ? { reservation: held } : {}),
          },
          journal,
        );
      try {
        let answer = await send(reservation);
        const wait = answer.retryAfterSeconds;
        if (answer.status === 429 && wait !== null && wait <= TAIL_DELETE_RETRY_MAX_SECONDS) {
          // The 429 blocks the principal until then (on every replica); a little more for clocks.
          await sleep(wait * 1000 + 250);
          answer = await send(null);
        }
        return answer.success || answer.status === 404;
      } catch {
        // Recorded by the gateway (refused or failed); the tail expires at Cloudflare on its own.
        return false;
      } finally {
        // Unused if the first delete was refused before admission (e.g. the trail refused its intent).
        await unreserve();
      }
    };

    let collection: TailCollection | null = null;
    let failure: WardenError | null = null;
    let deleted: boolean;
    const sessionFacts = {
      method: 'GET',
      path: sessionPath,
      pathTemplate: SESSION_TEMPLATE,
      action: 'cloudflare.tail_session',
    };
    try {
      const refusal = socketRefusal(tail.url);
      if (refusal) {
        // Nothing connected: the session's outcome, without an intent, says why.
        failure = refusal;
        journal.later([
          upstreamFailureRecord(party.subject, { ...sessionFacts, requestBytes: 0 }, null, {
            error: refusal,
            durationMs: 0,
          }),
        ]);
      } else if (signal.aborted) {
        // The execution ended while the tail was being created: nothing to collect, only to delete.
        collection = { events: [], ended: 'aborted', cutEvents: 0, bytes: 0 };
      } else {
        const filterJson = JSON.stringify(filters);
        const [intent] = await journal.commit([
          upstreamIntentRecord(party.subject, {
            ...sessionFacts,
            requestBytes: Buffer.byteLength(filterJson),
            bodySha256: createHash('sha256').update(filterJson).digest('hex'),
          }),
        ]);
        const sessionStarted = clock.now().getTime();
        try {
          collection = await deps.collect({
            url: tail.url,
            filters,
            durationMs: request.seconds * 1000,
            maxEvents: request.maxEvents,
            maxEventBytes: deps.maxEventBytes,
            scrub: credentialScrubber(party.credential, r2Secrets(party.credential, call.r2AccessKey)),
            signal,
            userAgent: 'warden/0.1',
          });
        } catch (error) {
          failure = isWardenError(error)
            ? error
            : new WardenError('upstream_error', 'tail.worker: the tail WebSocket failed');
        }
        journal.later([
          upstreamOutcomeRecord(party.subject, sessionFacts, intent?.id ?? null, {
            outcome: failure ? outcomeOf(failure.code) : 'success',
            error: failure ? { code: failure.code, message: failure.message } : null,
            status: null,
            cfRay: null,
            durationMs: clock.now().getTime() - sessionStarted,
            responseBytes: collection?.bytes ?? null,
            details: {
              tail_id: tail.id,
              script: request.script,
              seconds: request.seconds,
              events: collection?.events.length ?? 0,
              cut_events: collection?.cutEvents ?? 0,
              ended: collection?.ended ?? 'error',
            },
          }),
        ]);
      }
    } finally {
      // Whatever happened above (time, event cap, error, the execution ended): the tail goes.
      deleted = await deleteTail();
    }
    if (failure) throw failure;
    return {
      script: request.script,
      tailId: tail.id,
      events: collection?.events ?? [],
      ...(collection?.ended === 'max_events' ? { truncated: true } : {}),
      ended: collection?.ended ?? 'closed',
      ...(collection && collection.cutEvents > 0 ? { cutEvents: collection.cutEvents } : {}),
      durationMs: clock.now().getTime() - started,
      deleted,
    };
  }

  return { worker };
}
