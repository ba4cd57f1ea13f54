import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSpecStore } from '@warden/cloudflare';
import type { SpecStore } from '@warden/cloudflare';
import type { SandboxResult, Upstream, UpstreamResponse } from '../sandbox.types.ts';
import { specFixturePath } from '@warden/testing';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const realDocument = specFixturePath();

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** A spec store over the real Cloudflare document, processed into a fresh cache. */
export async function realSpecStore(): Promise<SpecStore> {
  const store = createSpecStore({ path: realDocument, cacheDir: tempDir('warden-codemode-spec-') });
  await store.load();
  return store;
}

export function ok(result: unknown): UpstreamResponse {
  return { success: true, status: 200, result, errors: [], messages: [] };
}

/** An upstream answering every request with an echo of it. */
export const echoUpstream: Upstream = async (request) => ok({ echo: request });

/** Messages in agent-facing errors must not reveal the host: paths, modules, stack frames. */
export const HOST_DETAILS =
  /\/work\/|\/tmp\/|node_modules|\.ts\b|node:|file:|warden-runtime|sandbox\.child|at \w+ \(/;

export function errorOf(result: SandboxResult): { code: string; message: string } {
  if (result.ok) throw new Error(`expected a failure, got ${JSON.stringify(result.result).slice(0, 200)}`);
  return result.error;
}

export function resultOf(result: SandboxResult): unknown {
  if (!result.ok) throw new Error(`expected a result, got ${result.error.code}: ${result.error.message}`);
  return result.result;
}
