import createClient from 'openapi-fetch';
import { toWardenApiError } from './errors.ts';
import type { paths } from './generated/warden-api.ts';
import { paginate } from './paginate.ts';
import type {
  AuditEvent,
  AuditEventPage,
  AuditEventQuery,
  CloudflareAuthorization,
  ConnectedAccount,
  ConnectedAccountPage,
  ConnectedAccountStatus,
  ExecuteToolResult,
  McpToken,
  ScopedTool,
  ScopedToolsPage,
} from './types.ts';

export interface WardenClientOptions {
  /** Where Warden is reached, e.g. `https://warden.example.com` (no `/api/v1`). */
  readonly baseUrl: string;
  /** The tenant API key (`wdn_sk_…`). Sent only in the Authorization header, never in errors. */
  readonly apiKey: string;
  /** A fetch to use instead of the global one (proxies, retries, tests). */
  readonly fetch?: (request: Request) => Promise<Response>;
}

/** Per-call options. */
export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface ListScopedToolsOptions {
  /** Only tools of these connections (`cloudflare` is the default connection). */
  readonly filter?: { readonly connectionNames?: readonly string[] };
  /** 1 to 100. */
  readonly pageSize?: number;
  readonly pageToken?: string;
}

export interface ExecuteToolInput {
  /** `cloudflare_search` or `cloudflare_execute`. */
  readonly toolName: string;
  /** Your id for the end user whose vaulted credential the call uses. */
  readonly identifier: string;
  /** `{code}` for search; `{code, account_id?}` for execute. */
  readonly params: Readonly<Record<string, unknown>>;
  readonly connectionName?: string;
  readonly connectedAccountId?: string;
  /** Your id for the agent run, recorded in the audit trail. */
  readonly agentRunId?: string;
}

export interface CreateConnectedAccountInput {
  readonly identifier: string;
  /** Defaults to `cloudflare`. */
  readonly connectionName?: string;
  readonly authorization: CloudflareAuthorization;
}

export interface ListConnectedAccountsOptions {
  readonly identifier?: string;
  readonly connectionName?: string;
  readonly status?: ConnectedAccountStatus;
  /** 1 to 100. */
  readonly pageSize?: number;
  readonly pageToken?: string;
}

export interface CreateMcpTokenInput {
  readonly identifier: string;
  /** Limit the token to these connections (all of the identifier's by default). */
  readonly connectionNames?: readonly string[];
  /** 60 s to 30 days: `"3600s"`, `"12h"`, `"7d"` or seconds. Default `"3600s"`. */
  readonly expiry?: string | number;
}

export interface WardenClient {
  readonly tools: {
    /** One page of the tools `identifier` may use now (only those with an ACTIVE account). */
    listScopedTools(
      identifier: string,
      options?: ListScopedToolsOptions,
      call?: CallOptions,
    ): Promise<ScopedToolsPage>;
    /** Every scoped tool, fetching pages as the iteration goes. */
    listAllScopedTools(
      identifier: string,
      options?: Omit<ListScopedToolsOptions, 'pageToken'>,
      call?: CallOptions,
    ): AsyncIterable<ScopedTool>;
    /**
     * Runs a tool. A tool failure (the code threw, Cloudflare refused, timeout, policy)
     * resolves with `data: null` and `error`; only caller errors reject (WardenApiError).
     */
    executeTool(input: ExecuteToolInput, call?: CallOptions): Promise<ExecuteToolResult>;
  };
  readonly connectedAccounts: {
    /** Vaults a credential after Cloudflare verified it; an invalid one rejects with 400. */
    create(input: CreateConnectedAccountInput, call?: CallOptions): Promise<ConnectedAccount>;
    list(options?: ListConnectedAccountsOptions, call?: CallOptions): Promise<ConnectedAccountPage>;
    listAll(
      options?: Omit<ListConnectedAccountsOptions, 'pageToken'>,
      call?: CallOptions,
    ): AsyncIterable<ConnectedAccount>;
    get(id: string, call?: CallOptions): Promise<ConnectedAccount>;
    /** Replaces the credential (verified first). */
    rotate(id: string, authorization: CloudflareAuthorization, call?: CallOptions): Promise<ConnectedAccount>;
    /** Revokes: the ciphertext and its data key are destroyed. */
    delete(id: string, call?: CallOptions): Promise<void>;
    /**
     * Vaults (or replaces) an R2 access key pair on the account: `r2` calls sign with it instead
     * of the S3 credentials derived from its API token. Only its key id is ever shown back.
     */
    setR2AccessKey(
      id: string,
      key: { access_key_id: string; secret_access_key: string },
      call?: CallOptions,
    ): Promise<ConnectedAccount>;
    /** Deletes the account's R2 access key pair; `r2` calls go back to the token's credentials. */
    removeR2AccessKey(id: string, call?: CallOptions): Promise<ConnectedAccount>;
  };
  readonly mcp: {
    /** Mints a per-user MCP session token (shown once) with a ready `mcp.json` fragment. */
    createToken(input: CreateMcpTokenInput, call?: CallOptions): Promise<McpToken>;
  };
  readonly audit: {
    listEvents(query?: AuditEventQuery, call?: CallOptions): Promise<AuditEventPage>;
    listAllEvents(query?: Omit<AuditEventQuery, 'page_token'>, call?: CallOptions): AsyncIterable<AuditEvent>;
  };
}

interface Answer<T> {
  readonly data?: T;
  readonly error?: unknown;
  readonly response: Response;
}

/** Copies only the options that are set: `undefined` members would reach the query string. */
function defined<T extends Record<string, unknown>>(value: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]: Exclude<T[K], undefined>;
  };
}

/** A typed client for Warden's tenant API (`/api/v1`). */
export function createWardenClient(options: WardenClientOptions): WardenClient {
  if (typeof options.baseUrl !== 'string' || options.baseUrl === '') {
    throw new TypeError('createWardenClient: baseUrl is required, e.g. https://warden.example.com');
  }
  if (typeof options.apiKey !== 'string' || options.apiKey.trim() === '') {
    throw new TypeError('createWardenClient: apiKey is required (a tenant API key)');
  }
  const secrets = [options.apiKey];
  // The key lives in this closure and openapi-fetch's; it is not a property of the client.
  const api = createClient<paths>({
    baseUrl: options.baseUrl,
    headers: { authorization: `Bearer ${options.apiKey}`, accept: 'application/json' },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });

  async function unwrap<T>(pending: Promise<Answer<T>>): Promise<T> {
    const { data, error, response } = await pending;
    if (!response.ok) throw toWardenApiError(response, error, secrets);
    return data as T;
  }

  const signalOf = (call: CallOptions | undefined) => (call?.signal ? { signal: call.signal } : {});

  const listScopedTools: WardenClient['tools']['listScopedTools'] = (identifier, opts = {}, call) =>
    unwrap(
      api.GET('/api/v1/tools/scoped', {
        params: {
          query: defined({
            identifier,
            // An empty list means no filter, like an absent one.
            connection_names: opts.filter?.connectionNames?.length
              ? opts.filter.connectionNames.join(',')
              : undefined,
            page_size: opts.pageSize,
            page_token: opts.pageToken,
          }),
        },
        ...signalOf(call),
      }),
    );

  const listConnectedAccounts: WardenClient['connectedAccounts']['list'] = (opts = {}, call) =>
    unwrap(
      api.GET('/api/v1/connected_accounts', {
        params: {
          query: defined({
            identifier: opts.identifier,
            connection_name: opts.connectionName,
            status: opts.status,
            page_size: opts.pageSize,
            page_token: opts.pageToken,
          }),
        },
        ...signalOf(call),
      }),
    );

  const listEvents: WardenClient['audit']['listEvents'] = (query = {}, call) =>
    unwrap(api.GET('/api/v1/audit/events', { params: { query: defined(query) }, ...signalOf(call) }));

  return {
    tools: {
      listScopedTools,
      listAllScopedTools: (identifier, opts = {}, call) =>
        paginate(async (pageToken) => {
          const page = await listScopedTools(identifier, { ...opts, ...defined({ pageToken }) }, call);
          return { items: page.tools, nextPageToken: page.next_page_token };
        }),
      executeTool: (input, call) =>
        unwrap(
          api.POST('/api/v1/execute_tool', {
            body: {
              tool_name: input.toolName,
              identifier: input.identifier,
              params: { ...input.params },
              ...defined({
                connection_name: input.connectionName,
                connected_account_id: input.connectedAccountId,
                agent_run_id: input.agentRunId,
              }),
            },
            ...signalOf(call),
          }),
        ),
    },
    connectedAccounts: {
      create: async (input, call) =>
        (
          await unwrap(
            api.POST('/api/v1/connected_accounts', {
              body: {
                identifier: input.identifier,
                authorization: input.authorization,
                ...defined({ connection_name: input.connectionName }),
              },
              ...signalOf(call),
            }),
          )
        ).connected_account,
      list: listConnectedAccounts,
      listAll: (opts = {}, call) =>
        paginate(async (pageToken) => {
          const page = await listConnectedAccounts({ ...opts, ...defined({ pageToken }) }, call);
          return { items: page.connected_accounts, nextPageToken: page.next_page_token };
        }),
      get: async (id, call) =>
        (
          await unwrap(
            api.GET('/api/v1/connected_accounts/{id}', { params: { path: { id } }, ...signalOf(call) }),
          )
        ).connected_account,
      rotate: async (id, authorization, call) =>
        (
          await unwrap(
            api.PUT('/api/v1/connected_accounts/{id}', {
              params: { path: { id } },
              body: { authorization },
              ...signalOf(call),
            }),
          )
        ).connected_account,
      delete: async (id, call) => {
        await unwrap(
          api.DELETE('/api/v1/connected_accounts/{id}', { params: { path: { id } }, ...signalOf(call) }),
        );
      },
      setR2AccessKey: async (id, key, call) =>
        (
          await unwrap(
            api.PUT('/api/v1/connected_accounts/{id}/r2_access_key', {
              params: { path: { id } },
              body: key,
              ...signalOf(call),
            }),
          )
        ).connected_account,
      removeR2AccessKey: async (id, call) =>
        (
          await unwrap(
            api.DELETE('/api/v1/connected_accounts/{id}/r2_access_key', {
              params: { path: { id } },
              ...signalOf(call),
            }),
          )
        ).connected_account,
    },
    mcp: {
      createToken: (input, call) =>
        unwrap(
          api.POST('/api/v1/mcp/tokens', {
            body: {
              identifier: input.identifier,
              ...defined({
                connection_names: input.connectionNames ? [...input.connectionNames] : undefined,
                expiry: input.expiry,
              }),
            },
            ...signalOf(call),
          }),
        ),
    },
    audit: {
      listEvents,
      listAllEvents: (query = {}, call) =>
        paginate(async (pageToken) => {
          const page = await listEvents({ ...query, ...defined({ page_token: pageToken }) }, call);
          return { items: page.events, nextPageToken: page.next_page_token };
        }),
    },
  };
}
