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
  readonly limits?: Partial<Pick<SandboxLimits, 'maxUpstreamRequests' | 'wallMs'>>;
}

const CODE_DESCRIPTION = 'JavaScript async arrow function, e.g. async () => ...';
/**
 * Room for the product list (~330 tokens), so the pair stays under 1,000 tokens however
 * large the API grows; the biggest products come first and the rest are counted.
 */
const PRODUCT_LIST_CHARS = 1_300;

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

function searchDescription(products: readonly string[]): string {
  return `Search the Cloudflare API spec with JavaScript. Globals:
spec: {paths: {[path]: {[method]: {summary, description, operationId, tags, parameters, requestBody, responses, "x-cfPermissionsRequired"?: {enum: string[]}}}}}, every $ref inlined (a schema nested in itself: {$circular: ref}). tags[0] is the product.
allowed(method, path): false if this user may not call it.
console.log(...): returned in logs.
Return small JSON (big results are cut).
Products: ${productList(products)}
Examples:
async () => Object.entries(spec.paths).flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => op.tags[0] === 'dns_records').map(([m, op]) => ({ method: m.toUpperCase(), path, summary: op.summary, ok: allowed(m, path) })))
async () => spec.paths['/zones/{zone_id}/dns_records'].post.requestBody`;
}

function executeDescription(options: ToolDefinitionOptions): string {
  const { maxUpstreamRequests, wallMs } = { ...DEFAULT_LIMITS, ...options.limits };
  const notes = [
    options.readOnly ? 'Read-only: only GET requests are allowed.' : '',
    options.policySummary ?? '',
  ]
    .filter((line) => line !== '')
    .join('\n');
  return `Call the Cloudflare API with JavaScript; find paths with cloudflare_search first. Globals:
cloudflare.request({method: 'GET'|'POST'|'PUT'|'PATCH'|'DELETE', path, query?, body?, contentType?, rawBody?}) → Promise<{success, status, result, errors, messages, result_info?}>. path is the API path ('/zones/{zone_id}/...' filled in, no host); Warden adds credentials. Refusals reject with an Error whose code says why (policy_denied, rate_limited, ...).
accountId: account_id, if given.
console.log(...): returned in logs.
At most ${maxUpstreamRequests} requests and ${Math.round(wallMs / 1000)} s per call. Return only what you need.${notes ? `\n${notes}` : ''}
Example:
async () => {
  const zones = await cloudflare.request({ method: 'GET', path: '/zones', query: { name: 'example.com' } });
  return (await cloudflare.request({ method: 'GET', path: \`/zones/\${zones.result[0].id}/dns_records\` })).result.map((r) => [r.type, r.name, r.content]);
}`;
}

export function toolDefinitions(options: ToolDefinitionOptions): [ToolDefinition, ToolDefinition] {
  return [
    {
      name: 'cloudflare_search',
      description: searchDescription(options.products),
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
            description: 'Cloudflare account id, available to the code as accountId',
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
