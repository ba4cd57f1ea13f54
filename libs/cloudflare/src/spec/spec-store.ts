import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import v8 from 'node:v8';
import { WardenError, noopLogger } from '@warden/core';
import type { Logger } from '@warden/core';
import { processCloudflareSpec } from './cloudflare-spec.ts';
import { createOperationMatcher } from './operation-matcher.ts';
import type { OperationMatch, OperationMatcher } from './operation-matcher.ts';
import type { OperationInfo, ProcessedOpenApi } from './openapi-processor.ts';

/** The newest Cloudflare API document, published by Cloudflare. */
export const DEFAULT_CLOUDFLARE_SPEC_URL =
  'https://raw.githubusercontent.com/cloudflare/api-schemas/main/openapi.json';

export interface SpecProcessor {
  /** Part of the cache key: change it whenever the processing output changes. */
  readonly id: string;
  process(raw: unknown): ProcessedOpenApi;
}

export const cloudflareSpecProcessor: SpecProcessor = { id: 'cloudflare/1', process: processCloudflareSpec };

export interface SpecStoreOptions {
  /** A local OpenAPI document; exactly one of `path` and `url`. */
  readonly path?: string;
  readonly url?: string;
  /** Where processed documents are cached (e.g. `<DATA_DIR>/spec`). */
  readonly cacheDir: string;
  readonly fetch?: typeof fetch;
  readonly logger?: Logger;
  readonly fetchTimeoutMs?: number;
  readonly maxDocumentBytes?: number;
  readonly processor?: SpecProcessor;
}

export interface LoadedSpec {
  /** Hash of the source document and the processing; changes when either does. */
  readonly version: string;
  readonly source: string;
  readonly loadedAt: Date;
  /**
   * The processed document as V8 serialization (`v8.deserialize`). Unlike JSON it keeps
   * subtrees shared by many `$ref`s shared: about 3 MB and 13 MB of heap for Cloudflare's
   * document instead of 17 MB of JSON and 32 MB of heap. Sandboxes load it from here.
   */
  readonly documentFile: string;
  readonly operations: readonly OperationInfo[];
  /** Products by number of operations, most first. */
  readonly products: readonly string[];
  readonly findOperation: OperationMatcher;
}

export interface SpecReload {
  readonly spec: LoadedSpec;
  readonly changed: boolean;
}

export interface SpecStore {
  /** Loads the document (from the cache when the source is unchanged or unreachable); idempotent. */
  load(): Promise<LoadedSpec>;
  /** Reads the source again; the current spec stays in use if that fails. */
  reload(): Promise<SpecReload>;
  /** The loaded spec; throws before `load()` has succeeded. */
  current(): LoadedSpec;
  /** `current().findOperation`: the operation a concrete request path belongs to. */
  findOperation(method: string, path: string): OperationMatch | undefined;
  /** `current().products`. */
  products(): readonly string[];
  /** Called after a reload that changed the document. */
  onChange(listener: (spec: LoadedSpec) => void): () => void;
}

interface SourcePointer {
  readonly source: string;
  readonly version: string;
  readonly etag?: string;
  readonly lastModified?: string;
}

interface IndexFile {
  readonly format: 1;
  readonly version: string;
  readonly source: string;
  readonly operations: readonly OperationInfo[];
  readonly products: readonly string[];
}

type SourceRead =
  | { readonly kind: 'unchanged' }
  | {
      readonly kind: 'document';
      readonly bytes: Buffer;
      readonly etag?: string;
      readonly lastModified?: string;
    };

const POINTER_FILE = 'spec-source.json';
const FILE_PATTERN = /^spec-([0-9a-f]+)\.(v8|index\.json)$/;

async function writeAtomically(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await rename(tmp, file);
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function createSpecStore(options: SpecStoreOptions): SpecStore {
  if ((options.path === undefined) === (options.url === undefined)) {
    throw new WardenError('invalid_request', 'spec: set exactly one of path and url');
  }
  const source = options.path !== undefined ? path.resolve(options.path) : (options.url as string);
  const logger = (options.logger ?? noopLogger).child({ component: 'spec-store' });
  const fetchImpl = options.fetch ?? fetch;
  const processor = options.processor ?? cloudflareSpecProcessor;
  const maxBytes = options.maxDocumentBytes ?? 64 * 1024 * 1024;
  const timeoutMs = options.fetchTimeoutMs ?? 60_000;
  const cacheDir = options.cacheDir;
  const listeners = new Set<(spec: LoadedSpec) => void>();
  let current: LoadedSpec | undefined;
  let previousVersion: string | undefined;
  let inFlight: Promise<SpecReload> | undefined;

  const documentFile = (version: string): string => path.join(cacheDir, `spec-${version}.v8`);
  const indexFile = (version: string): string => path.join(cacheDir, `spec-${version}.index.json`);

  function versionOf(bytes: Buffer): string {
    return createHash('sha256')
      .update(`${processor.id}\0${process.versions.v8}\0`)
      .update(bytes)
      .digest('hex')
      .slice(0, 20);
  }

  async function readSource(pointer: SourcePointer | undefined): Promise<SourceRead> {
    if (options.path !== undefined) {
      const bytes = await readFile(source);
      if (bytes.length > maxBytes) throw new Error(`the document exceeds ${maxBytes} bytes`);
      return { kind: 'document', bytes };
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    const cached = pointer?.source === source && (await readJson<IndexFile>(indexFile(pointer.version)));
    if (cached && pointer.etag) headers['if-none-match'] = pointer.etag;
    if (cached && pointer.lastModified) headers['if-modified-since'] = pointer.lastModified;
    const response = await fetchImpl(source, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (response.status === 304 && cached) return { kind: 'unchanged' };
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const declared = Number(response.headers.get('content-length') ?? '0');
    if (declared > maxBytes) throw new Error(`the document exceeds ${maxBytes} bytes`);
    const bytes = Buffer.from(await response.arrayBuffer());
    if (bytes.length > maxBytes) throw new Error(`the document exceeds ${maxBytes} bytes`);
    const etag = response.headers.get('etag');
    const lastModified = response.headers.get('last-modified');
    return {
      kind: 'document',
      bytes,
      ...(etag ? { etag } : {}),
      ...(lastModified ? { lastModified } : {}),
    };
  }

  function toLoaded(index: IndexFile): LoadedSpec {
    return {
      version: index.version,
      source: index.source,
      loadedAt: new Date(),
      documentFile: documentFile(index.version),
      operations: index.operations,
      products: index.products,
      findOperation: createOperationMatcher(index.operations),
    };
  }

  async function fromCache(version: string): Promise<LoadedSpec | undefined> {
    const index = await readJson<IndexFile>(indexFile(version));
    if (index?.format !== 1 || index.version !== version) return undefined;
    const document = await stat(documentFile(version)).catch(() => undefined);
    return document?.isFile() ? toLoaded(index) : undefined;
  }

  async function processAndCache(bytes: Buffer, version: string): Promise<LoadedSpec> {
    let raw: unknown;
    try {
      raw = JSON.parse(bytes.toString('utf8'));
    } catch (error) {
      throw new Error(`the document is not JSON: ${message(error)}`, { cause: error });
    }
    const started = performance.now();
    const processed = processor.process(raw);
    const index: IndexFile = {
      format: 1,
      version,
      source,
      operations: processed.operations,
      products: processed.products,
    };
    await mkdir(cacheDir, { recursive: true });
    await writeAtomically(documentFile(version), v8.serialize(processed.document));
    await writeAtomically(indexFile(version), JSON.stringify(index));
    logger.info(
      { version, operations: processed.operations.length, ms: Math.round(performance.now() - started) },
      'processed the OpenAPI document',
    );
    return toLoaded(index);
  }

  async function removeStaleFiles(keep: ReadonlySet<string>): Promise<void> {
    const names = await readdir(cacheDir).catch(() => [] as string[]);
    await Promise.all(
      names
        .filter((name) => {
          const match = FILE_PATTERN.exec(name);
          return match !== null && !keep.has(match[1] as string);
        })
        .map((name) => rm(path.join(cacheDir, name), { force: true })),
    );
  }

  async function refresh(allowCacheFallback: boolean): Promise<SpecReload> {
    const pointerFile = path.join(cacheDir, POINTER_FILE);
    const pointer = await readJson<SourcePointer>(pointerFile);
    let next: LoadedSpec;
    let read: SourceRead;
    try {
      read = await readSource(pointer);
    } catch (error) {
      const cached = allowCacheFallback && pointer?.source === source && (await fromCache(pointer.version));
      if (!cached) {
        throw new WardenError(
          'unavailable',
          `the OpenAPI document at ${source} could not be read: ${message(error)}`,
          { dependency: 'spec' },
          { cause: error },
        );
      }
      logger.warn(
        { err: message(error), version: cached.version },
        'spec source unreachable; using the cache',
      );
      return install(cached);
    }
    if (read.kind === 'unchanged') {
      const cached = pointer && (await fromCache(pointer.version));
      if (!cached)
        throw new WardenError('unavailable', 'the spec cache disappeared; retry', { dependency: 'spec' });
      next = cached;
    } else {
      const version = versionOf(read.bytes);
      try {
        next = (await fromCache(version)) ?? (await processAndCache(read.bytes, version));
      } catch (error) {
        throw new WardenError(
          'unavailable',
          `the OpenAPI document at ${source} could not be processed: ${message(error)}`,
          { dependency: 'spec' },
          { cause: error },
        );
      }
      const nextPointer: SourcePointer = {
        source,
        version,
        ...(read.etag !== undefined ? { etag: read.etag } : {}),
        ...(read.lastModified !== undefined ? { lastModified: read.lastModified } : {}),
      };
      await mkdir(cacheDir, { recursive: true });
      await writeAtomically(pointerFile, JSON.stringify(nextPointer));
    }
    return install(next);
  }

  async function install(next: LoadedSpec): Promise<SpecReload> {
    if (current?.version === next.version) return { spec: current, changed: false };
    previousVersion = current?.version;
    current = next;
    await removeStaleFiles(new Set([next.version, ...(previousVersion ? [previousVersion] : [])]));
    if (previousVersion !== undefined) {
      for (const listener of listeners) {
        try {
          listener(next);
        } catch (error) {
          logger.error({ err: message(error) }, 'spec change listener failed');
        }
      }
    }
    return { spec: next, changed: true };
  }

  function loaded(): LoadedSpec {
    if (!current) throw new WardenError('unavailable', 'the spec is not loaded yet', { dependency: 'spec' });
    return current;
  }

  function singleFlight(allowCacheFallback: boolean): Promise<SpecReload> {
    inFlight ??= refresh(allowCacheFallback).finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  }

  return {
    async load() {
      return current ?? (await singleFlight(true)).spec;
    },
    reload() {
      return singleFlight(current === undefined);
    },
    current: loaded,
    findOperation(method, concretePath) {
      return loaded().findOperation(method, concretePath);
    },
    products() {
      return loaded().products;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}
