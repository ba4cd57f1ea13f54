import type { Logger } from '@warden/core';
import { WardenError } from '@warden/core';
import { createSpecStore } from '@warden/cloudflare';
import type { LoadedSpec, SpecStore } from '@warden/cloudflare';
import { createSandboxPool, toolDefinitions } from '@warden/codemode';
import type { SandboxPool } from '@warden/codemode';
import type { CodeRunner, OperationInfo, SpecLookup, ToolDefinitionSource } from '@warden/tools';
import path from 'node:path';
import type { Config } from './config.ts';
import type { ReadinessCheck } from './readiness.ts';

const RETRY_LOAD_MS = 60_000;
const REFRESH_MS = 24 * 3600 * 1000;

/**
 * The Code Mode engine behind the use cases' ports: the spec store (loaded at start,
 * retried in the background when the source is unreachable, refreshed daily) and the
 * sandbox pool. Until a spec is loaded, search and execute answer 503.
 */
export interface CodeMode {
  readonly runner: CodeRunner;
  readonly spec: SpecLookup;
  readonly definitions: ToolDefinitionSource;
  readonly readiness: ReadinessCheck;
  readonly specStore: SpecStore;
  /** Loads the spec and starts the sandbox children (retried in the background until it works). */
  start(): Promise<void>;
  /** Reads the source again and hands a changed document to every sandbox. */
  reload(): Promise<{ version: string; changed: boolean }>;
  pool(): SandboxPool | null;
  close(): Promise<void>;
}

export function createCodeMode(
  config: Config,
  logger: Logger,
  /** Told whenever a spec version is loaded into the sandboxes (at start and on a changed reload). */
  onSpecLoaded?: (version: string, operations: number) => void,
): CodeMode {
  const log = logger.child({ component: 'code-mode' });
  const specStore = createSpecStore({
    ...(config.cloudflare.specPath
      ? { path: config.cloudflare.specPath }
      : { url: config.cloudflare.specUrl ?? '' }),
    cacheDir: path.join(config.dataDir, 'spec'),
    logger: log,
  });
  let pool: SandboxPool | null = null;
  let operations: { version: string; list: readonly OperationInfo[] } | null = null;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let refresh: NodeJS.Timeout | undefined;

  async function start(): Promise<void> {
    try {
      const spec = await specStore.load();
      if (closed) return;
      pool = createSandboxPool({
        size: config.sandboxPoolSize,
        spareChildren: config.sandboxSpareChildren,
        maxExecuteChildren: config.sandboxMaxExecuteChildren,
        spec: specStore,
        limits: config.sandboxLimits,
        logger: log,
      });
      await pool.ready();
      log.info({ version: spec.version, operations: spec.operations.length }, 'Code Mode ready');
      onSpecLoaded?.(spec.version, spec.operations.length);
    } catch (error) {
      log.warn({ err: error }, 'Cloudflare API spec not loaded; search and execute answer 503 until it is');
      if (!closed) retry = setTimeout(() => void start(), RETRY_LOAD_MS);
    }
  }
  async function startOnce(): Promise<void> {
    if (refresh) return;
    refresh = setInterval(
      () => void reload().catch((err: unknown) => log.warn({ err }, 'spec refresh failed')),
      REFRESH_MS,
    );
    refresh.unref();
    await start();
  }

  function loaded(): { spec: LoadedSpec; pool: SandboxPool } {
    if (!pool)
      throw new WardenError('unavailable', 'the Cloudflare API spec is not loaded yet; retry shortly', {
        dependency: 'spec',
      });
    return { spec: specStore.current(), pool };
  }

  async function reload() {
    const { spec, changed } = await specStore.reload();
    if (changed && pool) {
      await pool.reloadSpec();
      onSpecLoaded?.(spec.version, spec.operations.length);
    }
    if (!pool) await start();
    return { version: spec.version, changed };
  }

  const specLookup: SpecLookup = {
    get version() {
      return pool ? specStore.current().version : 'none';
    },
    findOperation(method, concretePath) {
      if (!pool) return null;
      const match = specStore.current().findOperation(method, concretePath);
      return match
        ? {
            method: match.operation.method,
            pathTemplate: match.operation.path,
            permissions: match.operation.permissions,
          }
        : null;
    },
    operations() {
      if (!pool) return [];
      const spec = specStore.current();
      if (operations?.version !== spec.version) {
        operations = {
          version: spec.version,
          list: spec.operations.map((op) => ({
            method: op.method,
            pathTemplate: op.path,
            permissions: op.permissions,
          })),
        };
      }
      return operations.list;
    },
  };

  return {
    specStore,
    spec: specLookup,
    runner: {
      async search(code, options) {
        return loaded().pool.search(code, {
          tenant: options.tenant,
          access: { denied: options.denied },
          ...(options.signal ? { signal: options.signal } : {}),
        });
      },
      async execute(code, options) {
        return loaded().pool.execute(code, {
          tenant: options.tenant,
          ...(options.accountId !== undefined ? { accountId: options.accountId } : {}),
          upstream: (request, context) => options.upstream(request, { signal: context.signal }),
          ...(options.r2
            ? { r2: (request, context) => options.r2!(request, { signal: context.signal }) }
            : {}),
          ...(options.tail
            ? { tail: (request, context) => options.tail!(request, { signal: context.signal }) }
            : {}),
          ...(options.signal ? { signal: options.signal } : {}),
        });
      },
    },
    definitions: {
      definitions(options) {
        const products = pool ? specStore.current().products : [];
        return toolDefinitions({
          products,
          limits: config.sandboxLimits,
          ...(options.policySummary ? { policySummary: options.policySummary } : {}),
        }).map((d) => ({
          name: d.name,
          description: d.description,
          inputSchema: d.inputSchema as unknown as Record<string, unknown>,
        }));
      },
    },
    readiness: {
      name: 'spec',
      async check() {
        loaded();
        const stats = loaded().pool.stats();
        if (stats.alive === 0) throw new Error('no sandbox process is alive');
        return stats.ready < stats.size ? 'degraded' : undefined;
      },
    },
    start: startOnce,
    reload,
    pool: () => pool,
    async close() {
      closed = true;
      clearTimeout(retry);
      clearInterval(refresh);
      await pool?.close();
    },
  };
}
