import path from 'node:path';
import { availableParallelism } from 'node:os';
import { parseBudget } from '@warden/ratelimit';
import type { BudgetSpec } from '@warden/ratelimit';
import { z } from 'zod';

/**
 * The only reader of the environment. Every variable is documented in README.md and
 * .env.example; a bad value stops start-up with a message naming the variable.
 */
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const schema = z
  .object({
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).default(8080),
    PUBLIC_URL: z.url().optional(),
    DATA_DIR: z.string().min(1).default('./.warden'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// connection string')
      .optional(),
    DATABASE_POOL_SIZE: int(1, 200).default(10),
    DATABASE_PREPARED_STATEMENTS: bool.default(true),
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
      .optional(),
    WARDEN_ADMIN_TOKEN: z
      .string()
      .min(32, 'must be at least 32 characters (e.g. `openssl rand -hex 32`)')
      .optional(),
    KMS_PROVIDER: z.enum(['local', 'aws']).default('local'),
    LOCAL_KEY_FILE: z.string().min(1).optional(),
    AWS_KMS_KEY_ID: z.string().min(1).optional(),
    AWS_REGION: z.string().min(1).optional(),
    AWS_KMS_ENDPOINT: z.url().optional(),
    AWS_ACCESS_KEY_ID: z.string().min(1).optional(),
    AWS_SECRET_ACCESS_KEY: z.string().min(1).optional(),
    AWS_SESSION_TOKEN: z.string().min(1).optional(),
    DATA_KEY_CACHE_SIZE: int(0, 1_000_000).default(1000),
    DATA_KEY_CACHE_TTL_SECONDS: int(0, 86_400).default(300),
    API_KEY_CACHE_TTL_MS: int(0, 60_000).default(5_000),
    CLOUDFLARE_API_BASE: z.url().default('https://api.cloudflare.com/client/v4'),
    CLOUDFLARE_TIMEOUT_MS: int(100, 300_000).default(30_000),
    CLOUDFLARE_SPEC_PATH: z.string().min(1).optional(),
    CLOUDFLARE_SPEC_URL: z.url().optional(),
    CLOUDFLARE_BUDGET: z.string().default('1200/300'),
    RATE_LIMIT_ON_REDIS_FAILURE: z.enum(['refuse', 'local']).default('refuse'),
    WARDEN_REPLICAS: int(1, 1000).default(1),
    MCP_ALLOWED_ORIGINS: z.string().optional(),
    AUDIT_RETENTION_DAYS: int(1, 400).default(90),
    DELIVERY_ALLOW_INSECURE: bool.default(false),
    OUTBOX_INTERVAL_MS: int(100, 60_000).default(1000),
    SANDBOX_POOL_SIZE: int(1, 64).default(availableParallelism()),
    SANDBOX_SPARE_CHILDREN: int(0, 64).default(1),
    SANDBOX_MAX_EXECUTE_CHILDREN: int(1, 1024).optional(),
    SANDBOX_TIMEOUT_MS: int(100, 300_000).default(30_000),
    SANDBOX_MEMORY_MB: int(16, 4096).default(128),
    SANDBOX_MAX_REQUESTS: int(1, 10_000).default(50),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    BODY_LIMIT_BYTES: int(1024, 50 * 1024 * 1024).default(1024 * 1024),
    TRUST_PROXY: bool.default(false),
    MIGRATE_ON_START: bool.default(true),
  })
  .superRefine((env, ctx) => {
    if (env.KMS_PROVIDER === 'aws' && !env.AWS_KMS_KEY_ID) {
      ctx.addIssue({
        code: 'custom',
        path: ['AWS_KMS_KEY_ID'],
        message: 'is required when KMS_PROVIDER=aws (a key id, ARN or alias/NAME)',
      });
    }
    if (env.CLOUDFLARE_SPEC_PATH && env.CLOUDFLARE_SPEC_URL) {
      ctx.addIssue({
        code: 'custom',
        path: ['CLOUDFLARE_SPEC_URL'],
        message: 'set either CLOUDFLARE_SPEC_PATH or CLOUDFLARE_SPEC_URL, not both',
      });
    }
  });

export type Env = z.infer<typeof schema>;

export interface Config {
  readonly host: string;
  readonly port: number;
  /** Base URL clients reach this service at (MCP URLs are built from it). */
  readonly publicUrl: string;
  readonly dataDir: string;
  readonly database:
    | {
        readonly kind: 'postgres';
        readonly url: string;
        readonly poolSize: number;
        /** Repeated statements run as named prepared statements; off behind a transaction-mode pooler. */
        readonly preparedStatements: boolean;
      }
    | { readonly kind: 'pglite'; readonly dataDir: string };
  readonly redisUrl: string | null;
  readonly adminToken: string | null;
  readonly kms:
    | { readonly provider: 'local'; readonly keyFile: string }
    | {
        readonly provider: 'aws';
        readonly keyId: string;
        readonly region?: string;
        readonly endpoint?: string;
        /** Static credentials when both variables are set; otherwise the AWS SDK's default chain. */
        readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
      };
  readonly dataKeyCache: { readonly maxEntries: number; readonly ttlMs: number };
  /** How long an authenticated tenant API key is remembered (0 = every call reads the database). */
  readonly apiKeyCacheTtlMs: number;
  readonly cloudflare: {
    readonly apiBase: string;
    readonly timeoutMs: number;
    readonly specPath: string | null;
    readonly specUrl: string | null;
    readonly budget: BudgetSpec;
  };
  /** What the rate budget does when Redis fails: refuse with 503, or a local bucket of capacity ÷ replicas. */
  readonly rateLimit: { readonly onRedisFailure: 'refuse' | 'local'; readonly replicas: number };
  /** Browser origins allowed to call /mcp (non-browser clients send none). */
  readonly mcpAllowedOrigins: readonly string[];
  readonly auditRetentionDays: number;
  /** SIEM sinks and webhooks may use http:// and private addresses: tests and single-host demos only. */
  readonly deliveryAllowInsecure: boolean;
  readonly outboxIntervalMs: number;
  readonly sandboxPoolSize: number;
  /** Execute children kept started for tenants that have none, and the most there may be. */
  readonly sandboxSpareChildren: number;
  readonly sandboxMaxExecuteChildren: number | undefined;
  /** Wall-clock deadline (and CPU-time cap), memory per isolate and upstream requests per execution. */
  readonly sandboxLimits: {
    readonly wallMs: number;
    readonly cpuMs: number;
    readonly memoryMb: number;
    readonly maxUpstreamRequests: number;
  };
  readonly logLevel: Env['LOG_LEVEL'];
  readonly bodyLimitBytes: number;
  readonly trustProxy: boolean;
  readonly migrateOnStart: boolean;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const DEFAULT_SPEC_URL = 'https://raw.githubusercontent.com/cloudflare/api-schemas/main/openapi.json';

export function loadConfig(source: Readonly<Record<string, string | undefined>> = process.env): Config {
  // Empty strings (e.g. `DATABASE_URL=` in an env file) mean "unset".
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (issue) => `  ${issue.path.join('.') || '(environment)'}: ${issue.message}`,
    );
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const env = parsed.data;
  const dataDir = path.resolve(env.DATA_DIR);
  let budget: BudgetSpec;
  try {
    budget = parseBudget(env.CLOUDFLARE_BUDGET, 'CLOUDFLARE_BUDGET');
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  ${(error as Error).message}`);
  }
  return {
    host: env.HOST,
    port: env.PORT,
    publicUrl: (
      env.PUBLIC_URL ?? `http://${env.HOST === '0.0.0.0' ? 'localhost' : env.HOST}:${env.PORT}`
    ).replace(/\/+$/, ''),
    dataDir,
    database: env.DATABASE_URL
      ? {
          kind: 'postgres',
          url: env.DATABASE_URL,
          poolSize: env.DATABASE_POOL_SIZE,
          preparedStatements: env.DATABASE_PREPARED_STATEMENTS,
        }
      : { kind: 'pglite', dataDir: path.join(dataDir, 'pglite') },
    redisUrl: env.REDIS_URL ?? null,
    adminToken: env.WARDEN_ADMIN_TOKEN ?? null,
    kms:
      env.KMS_PROVIDER === 'aws'
        ? {
            provider: 'aws',
            keyId: env.AWS_KMS_KEY_ID as string,
            ...(env.AWS_REGION ? { region: env.AWS_REGION } : {}),
            ...(env.AWS_KMS_ENDPOINT ? { endpoint: env.AWS_KMS_ENDPOINT } : {}),
            ...(env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY
              ? {
                  credentials: {
                    accessKeyId: env.AWS_ACCESS_KEY_ID,
                    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
                    ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
                  },
                }
              : {}),
          }
        : {
            provider: 'local',
            keyFile: path.resolve(env.LOCAL_KEY_FILE ?? path.join(dataDir, 'warden-keys.json')),
          },
    dataKeyCache: { maxEntries: env.DATA_KEY_CACHE_SIZE, ttlMs: env.DATA_KEY_CACHE_TTL_SECONDS * 1000 },
    apiKeyCacheTtlMs: env.API_KEY_CACHE_TTL_MS,
    cloudflare: {
      apiBase: env.CLOUDFLARE_API_BASE.replace(/\/+$/, ''),
      timeoutMs: env.CLOUDFLARE_TIMEOUT_MS,
      specPath: env.CLOUDFLARE_SPEC_PATH ? path.resolve(env.CLOUDFLARE_SPEC_PATH) : null,
      specUrl: env.CLOUDFLARE_SPEC_PATH ? null : (env.CLOUDFLARE_SPEC_URL ?? DEFAULT_SPEC_URL),
      budget,
    },
    rateLimit: { onRedisFailure: env.RATE_LIMIT_ON_REDIS_FAILURE, replicas: env.WARDEN_REPLICAS },
    mcpAllowedOrigins: (env.MCP_ALLOWED_ORIGINS ?? '')
      .split(',')
      .map((o) => o.trim().replace(/\/+$/, ''))
      .filter(Boolean),
    auditRetentionDays: env.AUDIT_RETENTION_DAYS,
    deliveryAllowInsecure: env.DELIVERY_ALLOW_INSECURE,
    outboxIntervalMs: env.OUTBOX_INTERVAL_MS,
    sandboxPoolSize: env.SANDBOX_POOL_SIZE,
    sandboxSpareChildren: env.SANDBOX_SPARE_CHILDREN,
    sandboxMaxExecuteChildren: env.SANDBOX_MAX_EXECUTE_CHILDREN,
    sandboxLimits: {
      wallMs: env.SANDBOX_TIMEOUT_MS,
      cpuMs: env.SANDBOX_TIMEOUT_MS,
      memoryMb: env.SANDBOX_MEMORY_MB,
      maxUpstreamRequests: env.SANDBOX_MAX_REQUESTS,
    },
    logLevel: env.LOG_LEVEL,
    bodyLimitBytes: env.BODY_LIMIT_BYTES,
    trustProxy: env.TRUST_PROXY,
    migrateOnStart: env.MIGRATE_ON_START,
  };
}
