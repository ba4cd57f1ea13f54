import type { ErrorCode } from '@warden/core';
import type { CloudflareRequest } from '@warden/cloudflare';

export interface SandboxLimits {
  /** Heap of one execute isolate; a search isolate gets this on top of the spec it holds. */
  readonly memoryMb: number;
  /** CPU time the code may use in one call. */
  readonly cpuMs: number;
  /** Wall-clock deadline of one call, waiting for upstream included. */
  readonly wallMs: number;
  /** `cloudflare.request` and `r2` calls one execution may make. */
  readonly maxUpstreamRequests: number;
  /** Results larger than this (estimated at 3 characters of JSON per token) are cut to fit. */
  readonly resultTokenBudget: number;
  /** Results whose JSON exceeds this many characters fail with `result_too_large` instead. */
  readonly maxResultChars: number;
  /** Captured console output kept per call. */
  readonly maxLogChars: number;
}

export const DEFAULT_LIMITS: SandboxLimits = {
  memoryMb: 128,
  cpuMs: 10_000,
  wallMs: 30_000,
  maxUpstreamRequests: 50,
  resultTokenBudget: 6_000,
  maxResultChars: 8 * 1024 * 1024,
  maxLogChars: 16 * 1024,
};

/** What search code may call, behind `allowed(method, path)`; per call, never shared. */
export interface SearchAccess {
  /** Only GET operations are allowed. */
  readonly readOnly?: boolean;
  /** Refused operations as `METHOD /path/template`, e.g. `DELETE /zones/{zone_id}`. */
  readonly denied?: readonly string[];
}

/**
 * One accepted `cloudflare.request`, validated (relative path: starts with `/`, no scheme,
 * host, `..` segments or control characters), as handed to the caller's upstream: the
 * Cloudflare client's request without its cancellation signal.
 */
export type UpstreamRequest = Omit<CloudflareRequest, 'signal'>;

/** What `cloudflare.request` resolves to in the sandbox. */
export interface UpstreamResponse {
  readonly success: boolean;
  readonly status: number;
  readonly result: unknown;
  readonly errors: readonly unknown[];
  readonly messages: readonly unknown[];
  readonly result_info?: unknown;
  /** A write held for a person's approval (status 202): planned, not sent. */
  readonly pending_approval?: true;
}

export interface UpstreamContext {
  /** Aborted when the execution ends (done, timed out, aborted) before the request does. */
  readonly signal: AbortSignal;
  /** 1 for the execution's first request. */
  readonly sequence: number;
}

/**
 * Sends one request upstream: the caller adds policy, rate budget, the credential and audit.
 * Reject with a `WardenError` to refuse; the sandboxed code sees an Error with its `code`.
 */
export type Upstream = (request: UpstreamRequest, context: UpstreamContext) => Promise<UpstreamResponse>;

/** What `r2.<op>(…)` in the sandbox asks for, validated by the parent (`validateR2Request`). */
export type R2Operation = 'list' | 'head' | 'get' | 'put' | 'delete';

export interface R2Request {
  readonly op: R2Operation;
  /** The call's account unless the code names another. */
  readonly accountId: string | null;
  readonly jurisdiction: 'default' | 'eu' | 'fedramp';
  readonly bucket: string;
  /** Every operation but `list`. */
  readonly key?: string;
  /** `list` only. */
  readonly prefix?: string;
  readonly delimiter?: string;
  readonly cursor?: string;
  readonly limit?: number;
  /** `get`: how the body is returned; `put`: how `body` is given (`json` was serialized in the sandbox). */
  readonly as?: 'text' | 'json' | 'base64';
  /** `get` only: bytes from `offset` (and at most `length`), or the last `suffix` bytes. */
  readonly range?: { readonly offset?: number; readonly length?: number; readonly suffix?: number };
  /** `put` only. */
  readonly body?: string;
  readonly contentType?: string;
}

/**
 * Sends one R2 request: the caller adds policy, rate budget, the credential, signing and audit,
 * and resolves to what the sandbox's `r2.<op>` returns (JSON-safe). Reject with a `WardenError`.
 */
export type R2Upstream = (request: R2Request, context: UpstreamContext) => Promise<unknown>;

/** What `tail.worker(…)` in the sandbox asks for, validated by the parent (`validateTailRequest`). */
export interface TailRequest {
  /** The call's account unless the code names another. */
  readonly accountId: string | null;
  readonly script: string;
  /** How long to collect, 1 to `MAX_TAIL_SECONDS`. */
  readonly seconds: number;
  readonly maxEvents: number;
  readonly filters: {
    readonly outcome?: readonly string[];
    readonly method?: readonly string[];
    readonly status?: readonly ('ok' | 'error' | 'canceled')[];
    readonly sampleRate?: number;
    readonly query?: string;
  };
}

/**
 * Runs one tail session: the caller adds policy, rate budget, the credential and audit, always
 * deletes the tail, and resolves to what the sandbox's `tail.worker` returns (JSON-safe).
 * `context.signal` ends collecting early. Reject with a `WardenError`.
 */
export type TailUpstream = (request: TailRequest, context: UpstreamContext) => Promise<unknown>;

export type SandboxErrorCode =
  | 'syntax_error'
  | 'execution_error'
  | 'timeout'
  | 'memory_limit'
  | 'too_many_requests'
  | 'result_too_large'
  | 'sandbox_crashed'
  | 'aborted'
  | ErrorCode;

export interface SandboxStats {
  readonly upstreamRequests: number;
  readonly wallMs: number;
  readonly cpuMs: number;
}

export interface Truncation {
  /** Size of the complete result as JSON, in characters. */
  readonly originalChars: number;
  /** Estimated tokens of the complete result. */
  readonly originalTokens: number;
  /** Size of the result returned, as JSON. */
  readonly keptChars: number;
}

export type SandboxResult =
  | {
      readonly ok: true;
      /** JSON-safe; when `truncated` is set, a shortened but valid copy. */
      readonly result: unknown;
      readonly truncated?: Truncation;
      readonly logs: readonly string[];
      readonly stats: SandboxStats;
    }
  | {
      readonly ok: false;
      readonly error: { readonly code: SandboxErrorCode; readonly message: string };
      readonly logs: readonly string[];
      readonly stats: SandboxStats;
    };

export interface SearchOptions {
  /** Whose call this is: named when its sandbox fails. */
  readonly tenant: string;
  readonly access?: SearchAccess;
  /** Stops the search when the caller goes away. */
  readonly signal?: AbortSignal;
}

export interface ExecuteOptions {
  /** Whose call this is: a sandbox process serves one tenant at a time. */
  readonly tenant: string;
  readonly accountId?: string;
  readonly upstream: Upstream;
  /** Where `r2.<op>(…)` goes; without it the sandbox's `r2` calls are refused. */
  readonly r2?: R2Upstream;
  /** Where `tail.worker(…)` goes; without it the sandbox's `tail` calls are refused. */
  readonly tail?: TailUpstream;
  readonly signal?: AbortSignal;
  readonly limits?: Partial<SandboxLimits>;
}
