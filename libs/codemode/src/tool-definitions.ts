/**
 * The two Code Mode tools as MCP lists them. Every token here is paid on every agent turn,
 * so the text is terse: the types, the rules that are not obvious, short examples.
 */
import { DEFAULT_LIMITS } from './sandbox.types.ts';
import type { SandboxLimits } from './sandbox.types.ts';

export interface JsonSchemaObject {
  readonly type: 'object';
  readonly properties: Readonly<Record<string, { readonly type: 'string'; readonly description: string }>>;
  readonly required: readonly string[];
  readonly additionalProperties: false;
}

export interface ToolDefinition {
  readonly name: 'cloudflare_search' | 'cloudflare_execute';
  readonly description: string;
  readonly inputSchema: JsonSchemaObject;
}

export interface ToolDefinitionOptions {
  /** Products of the loaded spec, most operations first (`LoadedSpec.products`). */
  readonly products: readonly string[];
  /** The caller may only read: execute refuses anything but GET. */
  readonly readOnly?: boolean;
  /** One line on what this caller's policy allows, appended to the execute description. */
  readonly policySummary?: string;
  /** The pool's limits, so the description states the real ones. */
  readonly limits?: Partial<Pick<SandboxLimits, 'maxUpstreamRequests' | 'wallMs' | 'maxLogChars'>>;
}

const CODE_DESCRIPTION = 'JavaScript async arrow function, e.g. async () => ...';
/**
 * Room for the product list (~190 tokens), so the pair stays under 1,000 tokens however
 * large the API grows; the biggest products come first and the rest are counted.
 */
const PRODUCT_LIST_CHARS = 720;

function productList(products: readonly string[]): string {
  let list = '';
  let shown = 0;
  for (const product of products) {
    const next = shown === 0 ? product : `${list}, ${product}`;
    if (next.length > PRODUCT_LIST_CHARS) break;
    list = next;
    shown++;
  }
  return shown < products.length ? `${list} and ${products.length - shown} more` : list;
}

/** What both tools return, stated exactly: REST `execute_tool` gives `data` and `logs`, MCP two text blocks. */
function returns(maxLogChars: number): string {
  return `Returns the value as JSON (cut when large) and console.log lines as logs (MCP: a second text block; ≤${Math.round(maxLogChars / 1024)} KB).`;
}

function searchDescription(products: readonly string[], maxLogChars: number): string {
  return `Search the Cloudflare API spec with JavaScript. Globals:
spec: {paths: {[path]: {[method]: {summary, description, operationId, tags, parameters, requestBody, responses, sdk?, "x-cfPermissionsRequired"?: {enum: string[]}}}}, sdk: {[name]: {method, path, operation?}}, r2, tail}, every $ref inlined (a schema nested in itself: {$circular: ref}). tags[0] is the product; sdk: the official Cloudflare SDK's method, for cloudflare_execute.
allowed(method, path): false if this user may not call it.
${returns(maxLogChars)}
Products: ${productList(products)}
Examples:
async () => Object.entries(spec.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => op.tags[0] === 'dns_records').map(([m, op]) => ({ method: m.toUpperCase(), path, sdk: op.sdk, summary: op.summary, ok: allowed(m, path) })))
async () => spec.sdk['dns.records.create'].operation.requestBody`;
}

function executeDescription(options: ToolDefinitionOptions): string {
  const { maxUpstreamRequests, wallMs, maxLogChars } = { ...DEFAULT_LIMITS, ...options.limits };
  const notes = [
    options.readOnly ? 'Read-only: only GET requests are allowed.' : '',
    options.policySummary ?? '',
  ]
    .filter((line) => line !== '')
    .join('\n');
  return `Call the Cloudflare API with JavaScript; find operations with cloudflare_search first. Globals:
cloudflare.<resource>.<method>(params): the official Cloudflare SDK (spec.sdk names), e.g. cloudflare.dns.records.list({zone_id}); path params by name (account_id defaults to accountId); resolves to result; lists to a page {result, result_info, hasNextPage(), getNextPage()}, for-await-able over all items.
cloudflare.request({method: 'GET'|'POST'|'PUT'|'PATCH'|'DELETE', path, query?, body?, contentType?, rawBody?}) → Promise<{success, status, result, errors, messages, result_info?}> for any API path ('/zones/{zone_id}/...' filled in, no host).
r2.get|put|list|head|delete: R2 objects (spec.r2); tail.worker: live Worker logs (spec.tail).
Warden adds credentials. Refusals and API errors reject with an Error whose code says why (policy_denied, rate_limited, upstream_error with status, errors, ...).
accountId: account_id, if given.
${returns(maxLogChars)}
At most ${maxUpstreamRequests} requests and ${Math.round(wallMs / 1000)} s per call. Return only what you need.${notes ? `\n${notes}` : ''}
Example:
async () => {
  const [zone] = (await cloudflare.zones.list({ name: 'example.com' })).result;
  const out = [];
  for await (const r of cloudflare.dns.records.list({ zone_id: zone.id })) out.push([r.type, r.name, r.content]);
  return out;
}`;
}

export function toolDefinitions(options: ToolDefinitionOptions): [ToolDefinition, ToolDefinition] {
  return [
    {
      name: 'cloudflare_search',
      description: searchDescription(options.products, { ...DEFAULT_LIMITS, ...options.limits }.maxLogChars),
      inputSchema: {
        type: 'object',
        properties: { code: { type: 'string', description: CODE_DESCRIPTION } },
        required: ['code'],
        additionalProperties: false,
      },
    },
    {
      name: 'cloudflare_execute',
      description: executeDescription(options),
      inputSchema: {
        type: 'object',
        properties: {
          code: { type: 'string', description: CODE_DESCRIPTION },
          account_id: {
            type: 'string',
            description: 'Account id, the code sees it as accountId',
          },
          approval_id: {
            type: 'string',
            description: "Report on this approval instead (code: '')",
          },
        },
        required: ['code'],
        additionalProperties: false,
      },
    },
  ];
}

/** The `tools/list` result as an MCP server sends it: what agents pay for in tokens. */
export function toolsListJson(definitions: readonly ToolDefinition[]): string {
  return JSON.stringify({ tools: definitions });
}
