/**
 * What the use cases need from the Code Mode engine and the spec, stated here so the
 * use cases do not depend on how the sandboxes are built.
 */
// What crosses the sandbox boundary (requests, responses, results) is the engine's own contract.
export type {
  R2Request,
  SandboxResult as SandboxOutcome,
  TailRequest,
  Truncation as TruncationInfo,
  UpstreamRequest,
  UpstreamResponse,
} from '@warden/codemode';
import type {
  R2Request,
  SandboxResult as SandboxOutcome,
  TailRequest,
  UpstreamRequest,
  UpstreamResponse,
} from '@warden/codemode';

export interface CodeRunner {
  /**
   * `denied`: operations (`METHOD /path/template`) this caller may not call, for annotation.
   * `tenant`: whose call it is; no tenant's code can make another tenant's call fail.
   */
  search(
    code: string,
    options: { denied: readonly string[]; tenant: string; signal?: AbortSignal },
  ): Promise<SandboxOutcome>;
  execute(
    code: string,
    options: {
      tenant: string;
      accountId: string | undefined;
      /** `signal` aborts when the execution ends (timeout, abort) before the request does. */
      upstream: (request: UpstreamRequest, context: { signal: AbortSignal }) => Promise<UpstreamResponse>;
      /** `r2.<op>(…)` of the code; without it the sandbox refuses them. */
      r2?: (request: R2Request, context: { signal: AbortSignal }) => Promise<unknown>;
      /** `tail.worker(…)` of the code; without it the sandbox refuses them. */
      tail?: (request: TailRequest, context: { signal: AbortSignal }) => Promise<unknown>;
      signal?: AbortSignal;
    },
  ): Promise<SandboxOutcome>;
}

export interface OperationInfo {
  readonly method: string;
  readonly pathTemplate: string;
  /** Token permission groups the operation requires (`x-cfPermissionsRequired`), any one of which suffices. */
  readonly permissions: readonly string[];
}

export interface SpecLookup {
  /** The operation an actual request path belongs to, or null when the spec has none. */
  findOperation(method: string, path: string): OperationInfo | null;
  /** Every operation, for policy annotation; changes only on spec reload (compare `version`). */
  operations(): readonly OperationInfo[];
  readonly version: string;
}

export interface ToolDefinition {
  readonly name: string;
  readonly description: string;
  readonly inputSchema: Record<string, unknown>;
}

export interface ToolDefinitionSource {
  definitions(options: { readOnly: boolean; policySummary: string | null }): readonly ToolDefinition[];
}
