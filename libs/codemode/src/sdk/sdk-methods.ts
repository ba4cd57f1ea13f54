/**
 * The official Cloudflare TypeScript SDK's method table (`sdk-methods.generated.ts`, made from
 * the pinned `cloudflare` package by `npm run sdk-methods:generate`) and what the sandboxes do
 * with it: execute isolates look one method up per name they call, search contexts tag the
 * spec's operations with their SDK names.
 *
 * One line per method, fields separated by spaces:
 *
 *     name METHOD path pagination args query spec
 *
 * - `pagination`: how a list method pages (`-` for methods that return one value).
 * - `args`: the SDK's arguments before `params`, in order: a path parameter's name, `$body` for
 *   a raw request body, or `[field]` when `params.field` is the JSON body (an array).
 * - `query`: names the OpenAPI operation declares as query parameters of a POST, PUT or PATCH.
 * - `spec`: `+` when the OpenAPI document the table was made with has the operation, `-` when
 *   it lacks it (spec-missing).
 */
import type { HttpMethod } from '@warden/cloudflare';

export const PAGINATIONS = [
  'page',
  'page_items',
  'cursor',
  'cursor_after',
  'token',
  'instances',
  'single',
] as const;
export type Pagination = (typeof PAGINATIONS)[number];

export interface SdkMethod {
  /** `dns.records.list`: the path after `client.` in the SDK. */
  readonly name: string;
  readonly method: HttpMethod;
  /** The SDK's path template: `/zones/{zone_id}/dns_records`. */
  readonly path: string;
  readonly pagination: Pagination | null;
  /** The arguments before `params`: path parameter names, or `$body` for a raw body. */
  readonly positional: readonly string[];
  /** `params[arrayBody]` is the JSON body (the SDK's `[ ...body ]` methods). */
  readonly arrayBody: string | null;
  /** Parameters of a POST, PUT or PATCH that go to the query string, not the body. */
  readonly query: readonly string[];
  /** The OpenAPI document the table was generated with has this operation. */
  readonly inSpec: boolean;
}

/** A raw (non-JSON) request body passed as an argument, e.g. `r2.buckets.objects.upload(key, body, params)`. */
export const RAW_BODY_ARG = '$body';

const METHODS: ReadonlySet<string> = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const PAGINATION_SET: ReadonlySet<string> = new Set(PAGINATIONS);

function list(field: string): string[] {
  return field === '-' ? [] : field.split(',');
}

export function formatSdkMethod(method: SdkMethod): string {
  const args = [...method.positional, ...(method.arrayBody ? [`[${method.arrayBody}]`] : [])];
  return [
    method.name,
    method.method,
    method.path,
    method.pagination ?? '-',
    args.length > 0 ? args.join(',') : '-',
    method.query.length > 0 ? method.query.join(',') : '-',
    method.inSpec ? '+' : '-',
  ].join(' ');
}

export function parseSdkMethod(line: string): SdkMethod {
  const fields = line.split(' ');
  const [name, verb, path, pagination, args, query, spec] = fields;
  if (
    fields.length !== 7 ||
    !name ||
    !verb ||
    !METHODS.has(verb) ||
    !path?.startsWith('/') ||
    !pagination ||
    (pagination !== '-' && !PAGINATION_SET.has(pagination)) ||
    !args ||
    !query ||
    (spec !== '+' && spec !== '-')
  ) {
    throw new Error(`not an SDK method line: ${JSON.stringify(line.slice(0, 200))}`);
  }
  const argList = list(args);
  const arrayBody = argList.find((arg) => arg.startsWith('['));
  return {
    name,
    method: verb as HttpMethod,
    path,
    pagination: pagination === '-' ? null : (pagination as Pagination),
    positional: argList.filter((arg) => !arg.startsWith('[')),
    arrayBody: arrayBody ? arrayBody.slice(1, -1) : null,
    query: list(query),
    inSpec: spec === '+',
  };
}

export function parseSdkTable(table: string): SdkMethod[] {
  return table
    .split('\n')
    .filter((line) => line !== '')
    .map(parseSdkMethod);
}

/** What an execute isolate needs to build a method's request; copied into the isolate. */
export type SdkCallShape = Omit<SdkMethod, 'name' | 'inSpec'>;

/**
 * The table as the sandboxes of one child process use it, parsed on first use: a child whose
 * code never uses the SDK style never parses it.
 */
export class SdkMethods {
  readonly #table: string;
  #methods: readonly SdkMethod[] | undefined;
  #byName: Map<string, SdkCallShape> | undefined;
  #names: string | undefined;

  constructor(table: string) {
    this.#table = table;
  }

  methods(): readonly SdkMethod[] {
    this.#methods ??= parseSdkTable(this.#table);
    return this.#methods;
  }

  /** What an execute isolate needs to call `name`, or null when the SDK has no such method. */
  describe(name: unknown): SdkCallShape | null {
    if (typeof name !== 'string') return null;
    this.#byName ??= new Map(this.methods().map(({ name: key, inSpec: _inSpec, ...shape }) => [key, shape]));
    return this.#byName.get(name) ?? null;
  }

  /** Every method name, space-separated: the isolate ranks them itself when a name is wrong. */
  names(): string {
    this.#names ??= this.methods()
      .map((m) => m.name)
      .join(' ');
    return this.#names;
  }
}

/**
 * The operation keys (`GET /zones/{}/dns_records`) an SDK path stands for. Parameter names
 * differ between the SDK and the OpenAPI document (`{zone_id}`, `{zone_identifier}`), so only
 * the shape counts; `/{accounts_or_zones}/{account_or_zone_id}/…` stands for both roots.
 */
export function operationKeys(method: string, path: string): string[] {
  const verb = method.toUpperCase();
  const segments = path.split('/').filter((s) => s !== '');
  const shape = (parts: readonly string[]) =>
    `${verb} /${parts.map((s) => s.replace(/\{[^{}]+\}/g, '{}')).join('/')}`;
  if (segments[0] !== '{accounts_or_zones}') return [shape(segments)];
  const rest = segments.slice(1);
  return [shape(['accounts', ...rest]), shape(['zones', ...rest])];
}

/** The part of a processed OpenAPI document the SDK annotation touches. */
export interface AnnotatableDocument {
  paths: Record<string, Record<string, Record<string, unknown>>>;
  sdk?: Record<string, SdkIndexEntry>;
}

/** `spec.sdk[name]` in search: how to call the method and, when the document has it, its operation. */
export interface SdkIndexEntry {
  readonly method: HttpMethod;
  readonly path: string;
  readonly operation?: Record<string, unknown>;
}

/** Operations of a processed document by `operationKeys` shape. */
export function operationsByKey(document: AnnotatableDocument): Map<string, Record<string, unknown>> {
  const byKey = new Map<string, Record<string, unknown>>();
  for (const [path, item] of Object.entries(document.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      const [key] = operationKeys(method, path);
      if (key && !byKey.has(key)) byKey.set(key, operation);
    }
  }
  return byKey;
}

/**
 * Tags each operation of the document with the SDK method that calls it (`sdk`, the first by
 * name when several do) and adds `sdk`, an index from every SDK method name to its method,
 * path and operation. Mutates the document; returns how many methods found an operation.
 */
export function annotateSdk(document: AnnotatableDocument, methods: readonly SdkMethod[]): number {
  const byKey = operationsByKey(document);
  const index: Record<string, SdkIndexEntry> = {};
  let found = 0;
  for (const method of methods) {
    const operations = operationKeys(method.method, method.path)
      .map((key) => byKey.get(key))
      .filter((op) => op !== undefined);
    for (const operation of operations) operation.sdk ??= method.name;
    const [operation] = operations;
    if (operation) found++;
    index[method.name] = { method: method.method, path: method.path, ...(operation ? { operation } : {}) };
  }
  document.sdk = index;
  return found;
}
