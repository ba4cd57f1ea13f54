import { createHash } from 'node:crypto';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
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

/** Named ranges proxy-addr knows (Fastify's `trustProxy`). */
const PROXY_RANGES = ['loopback', 'linklocal', 'uniquelocal'];

/**
 * TRUST_PROXY: `false`; `true` (proxies on loopback and private networks: `loopback, linklocal,
 * uniquelocal`); or proxy addresses, CIDR ranges and those names, comma-separated. The client is
 * the rightmost X-Forwarded-For entry that is not a trusted proxy. Never "every hop" (Fastify's
 * `true`): the leftmost entry is whatever the client wrote, and per-address limits would follow it.
 */
function parseTrustProxy(raw: string): false | string[] {
  const value = raw.trim().toLowerCase();
  if (['false', '0', 'no', ''].includes(value)) return false;
  if (['true', '1', 'yes'].includes(value)) return [...PROXY_RANGES];
  const entries = value.split(',').map((e) => e.trim());
  const bad = entries.find((e) => {
    if (PROXY_RANGES.includes(e)) return false;
    const [address, bits, extra] = e.split('/');
    const version = isIP(address ?? '');
    if (version === 0 || extra !== undefined) return true;
    if (bits === undefined) return false;
    return !/^\d+$/.test(bits) || Number(bits) > (version === 4 ? 32 : 128);
  });
  if (bad !== undefined) {
    throw new ConfigError(
      `invalid configuration:\n  TRUST_PROXY: "${bad}" is not true, false, a proxy address or CIDR range, or loopback/linklocal/uniquelocal; e.g. TRUST_PROXY=true for a load balancer on a private network, or TRUST_PROXY=203.0.113.10`,
    );
  }
  return entries;
}

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const schema = z
  .object({
    HOST: z.string().min(1).default('127.0.0.1'),
    PORT: int(0, 65535).default(8080),
    PUBLIC_URL: z
      .url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL (where clients reach Warden)' })
      .optional(),
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
    AWS_KMS_SIGNING_KEY_ID: z.string().min(1).optional(),
    AWS_KMS_SIGNING_PREVIOUS_KEY_IDS: z.string().optional(),
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
    REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9:_.-]{1,64}$/, 'must be 1-64 characters of A-Z, a-z, 0-9, ":", "_", "." or "-"')
      .optional(),
    REDIS_COMMAND_TIMEOUT_MS: int(50, 60_000).default(500),
    CLOUDFLARE_GRAPHQL_BUDGET: z.string().default('320/300'),
    CLOUDFLARE_R2_BUDGET: z.string().default('1200/300'),
    CLOUDFLARE_R2_ENDPOINT: z
      .url()
      .refine((v) => v.includes('{account_id}'), 'must contain {account_id} (and may contain {jurisdiction})')
      .optional(),
    R2_MAX_OBJECT_BYTES: int(1, 1024 * 1024 * 1024).default(10 * 1024 * 1024),
    R2_MAX_BYTES_IN_FLIGHT: int(1, 16 * 1024 * 1024 * 1024).default(64 * 1024 * 1024),
    R2_MAX_TENANT_BYTES_IN_FLIGHT: int(1, 16 * 1024 * 1024 * 1024).default(32 * 1024 * 1024),
    R2_BYTES_WAIT_MS: int(0, 60_000).default(5_000),
    CLOUDFLARE_EGRESS_LIMIT: int(0, 100_000).default(200),
    CLOUDFLARE_EGRESS_POOL: z
      .string()
      .regex(/^[A-Za-z0-9._:-]{1,64}$/, 'must be 1-64 letters, digits or . _ : -')
      .default('default'),
    CLOUDFLARE_BUDGET_WAIT_MS: int(0, 10_000).default(250),
    CLOUDFLARE_EGRESS_QUEUE_SIZE: int(1, 100_000).default(1000),
    RATE_LIMIT_ON_REDIS_FAILURE: z.enum(['refuse', 'local']).default('refuse'),
    CONTEXT_CACHE_TTL_MS: int(0, 300_000).default(10_000),
    WARDEN_REPLICAS: int(1, 1000).default(1),
    MCP_ALLOWED_ORIGINS: z.string().optional(),
    OAUTH_ACCESS_TOKEN_TTL_SECONDS: int(60, 86_400).default(900),
    OAUTH_REFRESH_TOKEN_TTL_SECONDS: int(3600, 365 * 86_400).default(30 * 86_400),
    OAUTH_LOGIN_LINK_TTL_SECONDS: int(30, 3600).default(300),
    OAUTH_ALLOW_INSECURE: bool.default(false),
    OAUTH_REGISTRATION_LIMIT: z.string().default('20/3600'),
    OAUTH_SIGN_IN_LIMIT: z.string().default('60/600'),
    OAUTH_UNUSED_CLIENT_TTL_SECONDS: int(300, 30 * 86_400).default(86_400),
    SSO_DOMAIN_PROOF: z.enum(['dns', 'none']).default('dns'),
    SSO_VERIFY_LIMIT: z.string().default('5/60'),
    SSO_DOMAIN_RECHECK_HOURS: int(0, 8760).default(24),
    SSO_DOMAIN_LAPSE_HOURS: int(1, 8760).default(72),
    SSO_DNS_SERVERS: z
      .string()
      .refine(
        (v) =>
          v.split(',').every((server) => {
            const m = /^(?:\[([0-9a-fA-F:]+)\]|([0-9.]+))(?::(\d{1,5}))?$/.exec(server.trim());
            return (
              m !== null && isIP(m[1] ?? m[2] ?? '') !== 0 && (m[3] === undefined || Number(m[3]) <= 65_535)
            );
          }),
        'must be DNS server IP addresses separated by commas, e.g. "10.0.0.2" or "127.0.0.1:5353" or "[::1]:53"',
      )
      .optional(),
    AUDIT_RETENTION_DAYS: int(1, 400).default(90),
    AUDIT_CHECKPOINT_INTERVAL_SECONDS: int(10, 86_400).default(300),
    AUDIT_OUTCOME_GRACE_SECONDS: int(0, 86_400).optional(),
    SHUTDOWN_DRAIN_SECONDS: int(0, 20).default(0),
    /** How long a plan of held writes waits for a decision before it expires. */
    APPROVAL_EXPIRY_HOURS: int(1, 720).default(24),
    /** Writes one plan may hold, and the size of its JSON: an execution planning more gets none. */
    APPROVAL_MAX_STEPS: int(1, 500).default(20),
    APPROVAL_MAX_PLAN_BYTES: int(1024, 16 * 1024 * 1024).default(256 * 1024),
    /**
     * An apply whose replica has not renewed its lease for this long (it stopped) is settled as
     * interrupted by any replica; kept above CLOUDFLARE_TIMEOUT_MS plus a database round trip.
     */
    APPROVAL_APPLY_LEASE_SECONDS: int(2, 3_600).default(90),
    DELIVERY_ALLOW_INSECURE: bool.default(false),
    OUTBOX_INTERVAL_MS: int(100, 60_000).default(1000),
    SCHEDULER_CHECK_MS: int(100, 600_000).default(30_000),
    SANDBOX_POOL_SIZE: int(1, 64).default(availableParallelism()),
    SANDBOX_SPARE_CHILDREN: int(0, 64).default(1),
    SANDBOX_MAX_EXECUTE_CHILDREN: int(1, 1024).optional(),
    SANDBOX_TIMEOUT_MS: int(100, 300_000).default(30_000),
    SANDBOX_MEMORY_MB: int(16, 4096).default(128),
    SANDBOX_MAX_REQUESTS: int(1, 10_000).default(50),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    BODY_LIMIT_BYTES: int(1024, 50 * 1024 * 1024).default(1024 * 1024),
    TRUST_PROXY: z.string().default('false'),
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
    if (env.R2_MAX_TENANT_BYTES_IN_FLIGHT < env.R2_MAX_OBJECT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['R2_MAX_TENANT_BYTES_IN_FLIGHT'],
        message: `must be at least R2_MAX_OBJECT_BYTES (${env.R2_MAX_OBJECT_BYTES}), or no object of that size could be read`,
      });
    }
    if (env.R2_MAX_BYTES_IN_FLIGHT < env.R2_MAX_TENANT_BYTES_IN_FLIGHT) {
      ctx.addIssue({
        code: 'custom',
        path: ['R2_MAX_BYTES_IN_FLIGHT'],
        message: `must be at least R2_MAX_TENANT_BYTES_IN_FLIGHT (${env.R2_MAX_TENANT_BYTES_IN_FLIGHT})`,
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
  /**
   * Prefix of every Redis key, channel and job queue of this deployment, so deployments sharing a
   * Redis never meet. Defaults to one derived from the database.
   */
  readonly redisKeyPrefix: string;
  /**
   * How long a budget command may take before Redis counts as unavailable (and the
   * `RATE_LIMIT_ON_REDIS_FAILURE` rule applies).
   */
  readonly redisCommandTimeoutMs: number;
  /** How long a tool call's context (account, policy, settings) may be served from memory. */
  readonly contextCacheTtlMs: number;
  readonly adminToken: string | null;
  readonly kms:
    | { readonly provider: 'local'; readonly keyFile: string }
    | {
        readonly provider: 'aws';
        readonly keyId: string;
        /** The asymmetric key that signs audit checkpoints; none: checkpoints are not made. */
        readonly signingKeyId: string | null;
        /** Signing keys switched away from, still trusted when verifying old checkpoints. */
        readonly previousSigningKeyIds: readonly string[];
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
    /** The R2 S3 endpoint template (`{account_id}`, `{jurisdiction}`); null for Cloudflare's. */
    readonly r2Endpoint: string | null;
    /** Largest object a get returns or a put sends from an execution. */
    readonly r2MaxObjectBytes: number;
    /** The origins (`wss://host[:port]`) a tail session's WebSocket may be on (`tailSocketOrigins`). */
    readonly tailSocketOrigins: readonly string[];
    /** R2 bodies held at once: the whole process, one tenant, and how long a transfer waits for room. */
    readonly r2BytesInFlight: { readonly process: number; readonly tenant: number; readonly waitMs: number };
  };
  readonly rateLimit: {
    /** What the budget does when Redis fails: refuse with 503, or local windows of capacity ÷ replicas. */
    readonly onRedisFailure: 'refuse' | 'local';
    readonly replicas: number;
    /** GraphQL queries per seconds, per principal, apart from REST. */
    readonly graphqlBudget: BudgetSpec;
    /** R2 object requests per seconds, per principal, apart from the API. */
    readonly r2Budget: BudgetSpec;
    /** Requests per second from one egress IP, every tenant together; 0 = no limit. */
    readonly egressLimit: number;
    /** Replicas with the same pool share the egress limit (one egress IP or NAT gateway). */
    readonly egressPool: string;
    /** The longest an upstream request waits for the egress queue or a window about to free. */
    readonly maxWaitMs: number;
    /** Requests one replica lets wait for egress at once. */
    readonly egressQueueSize: number;
  };
  /** Browser origins allowed to call /mcp (non-browser clients send none). */
  readonly mcpAllowedOrigins: readonly string[];
  /** MCP sign-in (OAuth 2.1 authorization server for /mcp). */
  readonly oauth: {
    readonly accessTokenTtlSeconds: number;
    /** Lifetime of a grant's refresh tokens (each use rotates it). */
    readonly refreshTokenTtlSeconds: number;
    readonly loginLinkTtlSeconds: number;
    /**
     * Tests and single-host demos only: http:// and private-network identity providers, and
     * client ID metadata documents from private networks with unverified TLS certificates.
     */
    readonly allowInsecure: boolean;
    /** Dynamic Client Registrations per client address (`request.ip`), across every replica. */
    readonly registrationLimit: BudgetSpec;
    /** Sign-ins started per client address (authorization requests; SSO starts), across every replica. */
    readonly signInLimit: BudgetSpec;
    /** A dynamically registered client that gets no grant within this long is forgotten. */
    readonly unusedClientTtlSeconds: number;
    /**
     * How a tenant proves an SSO email domain before engineers of it are sent to its provider:
     * `dns` (a TXT record) or `none` (first come; single-organization deployments).
     */
    readonly domainProof: 'dns' | 'none';
    /** Domain proof requests per tenant (each may send Warden's resolver to DNS), across every replica. */
    readonly verifyLimit: BudgetSpec;
    /** Resolvers the DNS proof asks (an IP address, with a port if not 53); null: the system's. */
    readonly dnsServers: readonly string[] | null;
    /**
     * Under the DNS proof, how often a proven domain's record is looked up again and how long it
     * may stay missing before the domain lapses to pending; null: proofs are never re-checked.
     */
    readonly domainRecheck: { readonly intervalMs: number; readonly lapseMs: number } | null;
  };
  readonly auditRetentionDays: number;
  /** How often each moved chain head is signed (a checkpoint). */
  readonly auditCheckpointIntervalMs: number;
  /**
   * How long an upstream request's intent may wait for its outcome before the sweeper records it
   * as `unknown`; null: the call deadline plus the upstream timeout plus a minute.
   */
  readonly auditOutcomeGraceMs: number | null;
  /**
   * On SIGTERM, how long `/readyz` answers 503 while requests are still served, so a load balancer
   * polling it stops routing here before the listener closes.
   */
  readonly shutdownDrainMs: number;
  /** SIEM sinks and webhooks may use http:// and private addresses: tests and single-host demos only. */
  readonly deliveryAllowInsecure: boolean;
  readonly outboxIntervalMs: number;
  /** How often the job schedules in Redis are checked (missing or stalled ones made again). */
  readonly schedulerCheckMs: number;
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
  /**
   * The proxies whose `X-Forwarded-For` entries are believed (addresses, CIDR ranges, proxy-addr's
   * named ranges), or none: the client is the rightmost entry that is not one of them.
   */
  readonly trustProxy: false | readonly string[];
  readonly migrateOnStart: boolean;
  /** A pending approval expires this long after its plan was recorded. */
  readonly approvalExpiryMs: number;
  /** The largest plan an execution may ask approval for (writes, bytes of its JSON). */
  readonly approvalPlanLimits: { readonly maxSteps: number; readonly maxBytes: number };
  /** How long an apply's lease holds without a renewal before another replica settles it. */
  readonly approvalApplyLeaseMs: number;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * `warden:<8 hex>` from the database a deployment uses (host, port and database name; never the
 * password): two deployments on one Redis get different prefixes unless they share a database,
 * in which case they are one deployment.
 */
function defaultRedisPrefix(database: string): string {
  let identity = database;
  try {
    const url = new URL(database);
    identity = `${url.hostname}:${url.port || '5432'}${url.pathname}`;
  } catch {
    // A data directory path (the embedded database) identifies itself.
  }
  return `warden:${createHash('sha256').update(identity).digest('hex').slice(0, 8)}`;
}

/**
 * A local spec the operator named must be there at start: otherwise Code Mode would sit
 * "unavailable" behind a running service, with the cause only in /readyz.
 */
function readableSpecPath(value: string): string {
  const resolved = path.resolve(value);
  let problem: string | null = null;
  try {
    accessSync(resolved, constants.R_OK);
    if (!statSync(resolved).isFile()) problem = 'is not a file';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    problem =
      code === 'ENOENT'
        ? 'does not exist'
        : code === 'EACCES' || code === 'EPERM'
          ? 'is not readable by this process'
          : `cannot be read (${code ?? 'unknown error'})`;
  }
  if (problem) {
    throw new ConfigError(
      `invalid configuration:\n  CLOUDFLARE_SPEC_PATH: ${resolved} ${problem}; point it at a readable copy of the Cloudflare OpenAPI document (JSON), or unset it to fetch the document from CLOUDFLARE_SPEC_URL`,
    );
  }
  return resolved;
}

const DEFAULT_SPEC_URL = 'https://raw.githubusercontent.com/cloudflare/api-schemas/main/openapi.json';

/**
 * Where Cloudflare serves tail sessions: `POST …/workers/scripts/{name}/tails` answers a `url`
 * like `wss://tail.developers.workers.dev/<id>` (the OpenAPI document leaves `url` untyped; wrangler
 * and other tail clients connect there).
 */
const CLOUDFLARE_TAIL_ORIGIN = 'wss://tail.developers.workers.dev';

/**
 * The origins a tail session's WebSocket may be on: Cloudflare's tail host over wss://, and, for
 * an API base other than Cloudflare's (a fake in tests and demos, a proxy), that API's own host
 * and port, over ws:// only when the API is http://. Nowhere else: the URL comes from an upstream
 * answer, and connecting to whatever it names would reach internal hosts.
 */
function tailSocketOrigins(apiBase: string): string[] {
  const api = new URL(apiBase);
  if (api.protocol === 'https:' && api.host === 'api.cloudflare.com') return [CLOUDFLARE_TAIL_ORIGIN];
  const own = new URL(`${api.protocol === 'http:' ? 'ws:' : 'wss:'}//${api.host}`).origin;
  return [CLOUDFLARE_TAIL_ORIGIN, own];
}

/**
 * PUBLIC_URL as the URL standard spells it (scheme and host in lower case: `HTTPS://` is
 * `https://`), without a trailing slash: every check of its scheme reads one spelling.
 */
function publicUrlOf(raw: string): string {
  const url = new URL(raw);
  return `${url.protocol}//${url.host}${url.pathname}`.replace(/\/+$/, '');
}

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
  const specPath = env.CLOUDFLARE_SPEC_PATH ? readableSpecPath(env.CLOUDFLARE_SPEC_PATH) : null;
  let budget: BudgetSpec;
  let graphqlBudget: BudgetSpec;
  let r2Budget: BudgetSpec;
  let registrationLimit: BudgetSpec;
  let signInLimit: BudgetSpec;
  let verifyLimit: BudgetSpec;
  try {
    budget = parseBudget(env.CLOUDFLARE_BUDGET, 'CLOUDFLARE_BUDGET');
    graphqlBudget = parseBudget(env.CLOUDFLARE_GRAPHQL_BUDGET, 'CLOUDFLARE_GRAPHQL_BUDGET');
    r2Budget = parseBudget(env.CLOUDFLARE_R2_BUDGET, 'CLOUDFLARE_R2_BUDGET');
    registrationLimit = parseBudget(env.OAUTH_REGISTRATION_LIMIT, 'OAUTH_REGISTRATION_LIMIT');
    signInLimit = parseBudget(env.OAUTH_SIGN_IN_LIMIT, 'OAUTH_SIGN_IN_LIMIT');
    verifyLimit = parseBudget(env.SSO_VERIFY_LIMIT, 'SSO_VERIFY_LIMIT');
  } catch (error) {
    throw new ConfigError(`invalid configuration:\n  ${(error as Error).message}`);
  }
  return {
    host: env.HOST,
    port: env.PORT,
    publicUrl: env.PUBLIC_URL
      ? publicUrlOf(env.PUBLIC_URL)
      : `http://${env.HOST === '0.0.0.0' ? 'localhost' : env.HOST}:${env.PORT}`,
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
    redisKeyPrefix:
      env.REDIS_KEY_PREFIX ?? defaultRedisPrefix(env.DATABASE_URL ?? path.join(dataDir, 'pglite')),
    redisCommandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS,
    contextCacheTtlMs: env.CONTEXT_CACHE_TTL_MS,
    adminToken: env.WARDEN_ADMIN_TOKEN ?? null,
    kms:
      env.KMS_PROVIDER === 'aws'
        ? {
            provider: 'aws',
            keyId: env.AWS_KMS_KEY_ID as string,
            signingKeyId: env.AWS_KMS_SIGNING_KEY_ID ?? null,
            previousSigningKeyIds: (env.AWS_KMS_SIGNING_PREVIOUS_KEY_IDS ?? '')
              .split(',')
              .map((k) => k.trim())
              .filter(Boolean),
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
      specPath,
      specUrl: env.CLOUDFLARE_SPEC_PATH ? null : (env.CLOUDFLARE_SPEC_URL ?? DEFAULT_SPEC_URL),
      budget,
      r2Endpoint: env.CLOUDFLARE_R2_ENDPOINT ?? null,
      r2MaxObjectBytes: env.R2_MAX_OBJECT_BYTES,
      tailSocketOrigins: tailSocketOrigins(env.CLOUDFLARE_API_BASE),
      r2BytesInFlight: {
        process: env.R2_MAX_BYTES_IN_FLIGHT,
        tenant: env.R2_MAX_TENANT_BYTES_IN_FLIGHT,
        waitMs: env.R2_BYTES_WAIT_MS,
      },
    },
    rateLimit: {
      onRedisFailure: env.RATE_LIMIT_ON_REDIS_FAILURE,
      replicas: env.WARDEN_REPLICAS,
      graphqlBudget,
      r2Budget,
      egressLimit: env.CLOUDFLARE_EGRESS_LIMIT,
      egressPool: env.CLOUDFLARE_EGRESS_POOL,
      maxWaitMs: env.CLOUDFLARE_BUDGET_WAIT_MS,
      egressQueueSize: env.CLOUDFLARE_EGRESS_QUEUE_SIZE,
    },
    mcpAllowedOrigins: (env.MCP_ALLOWED_ORIGINS ?? '')
      .split(',')
      .map((o) => o.trim().replace(/\/+$/, ''))
      .filter(Boolean),
    oauth: {
      accessTokenTtlSeconds: env.OAUTH_ACCESS_TOKEN_TTL_SECONDS,
      refreshTokenTtlSeconds: env.OAUTH_REFRESH_TOKEN_TTL_SECONDS,
      loginLinkTtlSeconds: env.OAUTH_LOGIN_LINK_TTL_SECONDS,
      allowInsecure: env.OAUTH_ALLOW_INSECURE,
      registrationLimit,
      signInLimit,
      unusedClientTtlSeconds: env.OAUTH_UNUSED_CLIENT_TTL_SECONDS,
      domainProof: env.SSO_DOMAIN_PROOF,
      verifyLimit,
      dnsServers: env.SSO_DNS_SERVERS ? env.SSO_DNS_SERVERS.split(',').map((server) => server.trim()) : null,
      domainRecheck:
        env.SSO_DOMAIN_RECHECK_HOURS === 0
          ? null
          : {
              intervalMs: env.SSO_DOMAIN_RECHECK_HOURS * 3_600_000,
              lapseMs: env.SSO_DOMAIN_LAPSE_HOURS * 3_600_000,
            },
    },
    auditRetentionDays: env.AUDIT_RETENTION_DAYS,
    auditCheckpointIntervalMs: env.AUDIT_CHECKPOINT_INTERVAL_SECONDS * 1000,
    auditOutcomeGraceMs:
      env.AUDIT_OUTCOME_GRACE_SECONDS === undefined ? null : env.AUDIT_OUTCOME_GRACE_SECONDS * 1000,
    shutdownDrainMs: env.SHUTDOWN_DRAIN_SECONDS * 1000,
    approvalExpiryMs: env.APPROVAL_EXPIRY_HOURS * 3_600_000,
    approvalPlanLimits: { maxSteps: env.APPROVAL_MAX_STEPS, maxBytes: env.APPROVAL_MAX_PLAN_BYTES },
    approvalApplyLeaseMs: env.APPROVAL_APPLY_LEASE_SECONDS * 1000,
    deliveryAllowInsecure: env.DELIVERY_ALLOW_INSECURE,
    outboxIntervalMs: env.OUTBOX_INTERVAL_MS,
    schedulerCheckMs: env.SCHEDULER_CHECK_MS,
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
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
    migrateOnStart: env.MIGRATE_ON_START,
  };
}
