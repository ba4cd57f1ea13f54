/**
 * Messages between the pool and its child processes (fork IPC, V8 serialization). The
 * child is the less trusted side: the parent validates everything it asks for.
 */
import type { MemoryReport } from './child-monitor.ts';
import type { SandboxLimits, SandboxResult, SearchAccess } from './sandbox.types.ts';

/** The processed document as V8 serialization (the bytes of `LoadedSpec.documentFile`). */
export interface SpecPayload {
  readonly version: string;
  readonly document: Uint8Array;
}

export type ParentMessage =
  | { readonly type: 'load-spec'; readonly spec: SpecPayload; readonly searchMemoryMb: number }
  | {
      readonly type: 'search';
      readonly id: number;
      readonly code: string;
      readonly access: SearchAccess | null;
      readonly limits: SandboxLimits;
    }
  | {
      readonly type: 'execute';
      readonly id: number;
      readonly code: string;
      readonly accountId: string | null;
      readonly limits: SandboxLimits;
    }
  | {
      readonly type: 'upstream-outcome';
      readonly id: number;
      readonly seq: number;
      readonly outcome: UpstreamOutcome;
    }
  | { readonly type: 'abort'; readonly id: number }
  /** A tail runs: the call's wall-clock deadline moves out by `ms`. */
  | { readonly type: 'extend'; readonly id: number; readonly ms: number }
  /** The child is to serve another tenant: answer `released` once nothing of the last one runs. */
  | { readonly type: 'release' };

export type ChildMessage =
  | { readonly type: 'started' }
  | { readonly type: 'spec-loaded'; readonly version: string }
  | { readonly type: 'spec-failed'; readonly version: string; readonly message: string }
  | { readonly type: 'result'; readonly id: number; readonly result: SandboxResult }
  | { readonly type: 'upstream'; readonly id: number; readonly seq: number; readonly request: unknown }
  | { readonly type: 'released' }
  /** Its memory outgrew what its calls may use; the parent stops it. */
  | { readonly type: 'memory-exceeded'; readonly report: MemoryReport };

/** Settles a `cloudflare.request` inside the sandbox; never carries host stack traces. */
export type UpstreamOutcome =
  | { readonly ok: true; readonly response: unknown }
  | { readonly ok: false; readonly code: string; readonly message: string };
