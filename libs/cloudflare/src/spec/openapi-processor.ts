/**
 * Turns any OpenAPI 3.x document into the form Code Mode searches: every local `$ref`
 * resolved inline, each operation reduced to what an agent needs to call it. Nothing here
 * knows about Cloudflare; connector-specific rules (products, permissions) come in through
 * the options.
 */

/** Key of the marker that replaces a `$ref` whose target is already being expanded above it. */
export const CIRCULAR_REF_KEY = '$circular';
/** Key of the marker that replaces a `$ref` that does not point into the document. */
export const UNRESOLVED_REF_KEY = '$unresolved';

export const OPENAPI_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
export type OpenApiMethod = (typeof OPENAPI_METHODS)[number];

export interface ProcessedOperation {
  readonly summary?: string;
  readonly description?: string;
  readonly operationId?: string;
  /** The document's tags, preceded by the product when a product rule names one. */
  readonly tags: readonly string[];
  readonly deprecated?: boolean;
  readonly parameters?: readonly unknown[];
  readonly requestBody?: unknown;
  readonly responses?: unknown;
  /** Kept vendor extensions (`x-...`), verbatim but resolved. */
  readonly [extension: `x-${string}`]: unknown;
}

export type ProcessedPathItem = Partial<Record<OpenApiMethod, ProcessedOperation>>;

/** What search code sees as `spec`. */
export interface ProcessedDocument {
  readonly paths: Readonly<Record<string, ProcessedPathItem>>;
}

/** One operation, small enough to index every operation of a large API in memory. */
export interface OperationInfo {
  /** Upper case: `GET`, `POST`, ... */
  readonly method: string;
  /** The path template as the document spells it: `/zones/{zone_id}/dns_records`. */
  readonly path: string;
  readonly operationId?: string;
  readonly summary?: string;
  readonly product?: string;
  readonly tags: readonly string[];
  /** Credential permissions the operation needs, when the document says. */
  readonly permissions: readonly string[];
}

export interface OpenApiProcessOptions {
  /** The product an operation belongs to, from its path template. */
  readonly productOf?: (path: string) => string | undefined;
  /** Vendor extensions to keep on each operation. */
  readonly keepExtensions?: readonly `x-${string}`[];
  /** The permissions an operation requires, read from the raw (resolved) operation. */
  readonly permissionsOf?: (operation: Readonly<Record<string, unknown>>) => readonly string[];
}

export interface ProcessedOpenApi {
  readonly document: ProcessedDocument;
  readonly operations: readonly OperationInfo[];
  /** Products by number of operations, most first. */
  readonly products: readonly string[];
}

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function decodePointerToken(token: string): string {
  let decoded = token;
  try {
    decoded = decodeURIComponent(token);
  } catch {
    // A literal `%` in a key: the token is not percent-encoded.
  }
  return decoded.replace(/~1/g, '/').replace(/~0/g, '~');
}

/**
 * Resolves local `$ref`s (`#/...`) against one document. A `$ref` met again while its own
 * expansion is in progress becomes `{ $circular: ref }`; a `$ref` that points nowhere
 * becomes `{ $unresolved: ref }`.
 *
 * Expansions without any cycle marker are the same wherever they appear, so they are built
 * once and shared: the result is a DAG in memory (cheap) that serializes to the fully inlined
 * tree. Expansions that contain a marker depend on their ancestors and are rebuilt each time.
 */
export function createRefResolver(root: unknown): (value: unknown) => unknown {
  const shared = new Map<string, unknown>();
  const depthOnStack = new Map<string, number>();

  function lookup(ref: string): unknown {
    if (!ref.startsWith('#')) return undefined;
    const pointer = ref.slice(1);
    if (pointer === '') return root;
    if (!pointer.startsWith('/')) return undefined;
    let node: unknown = root;
    for (const token of pointer.slice(1).split('/')) {
      const key = decodePointerToken(token);
      if (Array.isArray(node)) node = node[Number(key)];
      else if (isObject(node) && Object.hasOwn(node, key)) node = node[key];
      else return undefined;
    }
    return node;
  }

  /** Returns the expansion and the shallowest stack depth a cycle marker inside it points to. */
  function expand(node: unknown): [unknown, number] {
    if (typeof node !== 'object' || node === null) return [node, Infinity];
    if (Array.isArray(node)) {
      let low = Infinity;
      const out = node.map((item) => {
        const [value, l] = expand(item);
        low = Math.min(low, l);
        return value;
      });
      return [out, low];
    }
    const record = node as JsonObject;
    if (typeof record.$ref === 'string') {
      const [target, low] = expandRef(record.$ref);
      const siblings = Object.keys(record).filter((k) => k !== '$ref');
      // OpenAPI 3.1 lets a reference override the target's summary/description.
      if (siblings.length === 0 || !isObject(target)) return [target, low];
      const merged: JsonObject = { ...target };
      let mergedLow = low;
      for (const key of siblings) {
        const [value, l] = expand(record[key]);
        merged[key] = value;
        mergedLow = Math.min(mergedLow, l);
      }
      return [merged, mergedLow];
    }
    let low = Infinity;
    const out: JsonObject = {};
    for (const [key, child] of Object.entries(record)) {
      const [value, l] = expand(child);
      low = Math.min(low, l);
      out[key] = value;
    }
    return [out, low];
  }

  function expandRef(ref: string): [unknown, number] {
    const onStack = depthOnStack.get(ref);
    if (onStack !== undefined) return [{ [CIRCULAR_REF_KEY]: ref }, onStack];
    if (shared.has(ref)) return [shared.get(ref), Infinity];
    const target = lookup(ref);
    if (target === undefined) return [{ [UNRESOLVED_REF_KEY]: ref }, Infinity];
    depthOnStack.set(ref, depthOnStack.size);
    const [value, low] = expand(target);
    depthOnStack.delete(ref);
    if (low === Infinity) shared.set(ref, value);
    return [value, low];
  }

  return (value) => expand(value)[0];
}

function parameterKey(parameter: unknown): string | undefined {
  return isObject(parameter) && typeof parameter.name === 'string' && typeof parameter.in === 'string'
    ? `${parameter.in}:${parameter.name}`
    : undefined;
}

/** Path-level parameters apply to every operation unless the operation redefines them. */
function mergeParameters(pathLevel: unknown, operationLevel: unknown): unknown[] | undefined {
  const own = Array.isArray(operationLevel) ? operationLevel : [];
  const inherited = Array.isArray(pathLevel) ? pathLevel : [];
  if (own.length === 0 && inherited.length === 0) return undefined;
  const overridden = new Set(own.map(parameterKey).filter((k) => k !== undefined));
  return [...inherited.filter((p) => !overridden.has(parameterKey(p) ?? '')), ...own];
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function processOpenApi(raw: unknown, options: OpenApiProcessOptions = {}): ProcessedOpenApi {
  if (!isObject(raw) || !isObject(raw.paths)) {
    throw new Error('not an OpenAPI document: "paths" is missing');
  }
  const resolve = createRefResolver(raw);
  const keep = options.keepExtensions ?? [];
  const paths: Record<string, ProcessedPathItem> = {};
  const operations: OperationInfo[] = [];
  const productCounts = new Map<string, number>();

  for (const [template, rawItem] of Object.entries(raw.paths)) {
    const item = resolve(rawItem);
    if (!isObject(item)) continue;
    const processedItem: Partial<Record<OpenApiMethod, ProcessedOperation>> = {};
    const product = options.productOf?.(template);
    for (const method of OPENAPI_METHODS) {
      const op = item[method];
      if (!isObject(op)) continue;
      const docTags = Array.isArray(op.tags) ? op.tags.filter((t): t is string => typeof t === 'string') : [];
      const tags =
        product && !docTags.some((t) => t.toLowerCase() === product.toLowerCase())
          ? [product, ...docTags]
          : docTags;
      const parameters = mergeParameters(item.parameters, op.parameters);
      const summary = optionalString(op.summary);
      const description = optionalString(op.description);
      const operationId = optionalString(op.operationId);
      const extensions: Record<`x-${string}`, unknown> = {};
      for (const extension of keep) if (op[extension] !== undefined) extensions[extension] = op[extension];
      processedItem[method] = {
        ...(summary !== undefined ? { summary } : {}),
        ...(description !== undefined ? { description } : {}),
        ...(operationId !== undefined ? { operationId } : {}),
        tags,
        ...(op.deprecated === true ? { deprecated: true } : {}),
        ...(parameters !== undefined ? { parameters } : {}),
        ...(op.requestBody !== undefined ? { requestBody: op.requestBody } : {}),
        ...(op.responses !== undefined ? { responses: op.responses } : {}),
        ...extensions,
      };

      operations.push({
        method: method.toUpperCase(),
        path: template,
        ...(operationId !== undefined ? { operationId } : {}),
        ...(summary !== undefined ? { summary } : {}),
        ...(product !== undefined ? { product } : {}),
        tags,
        permissions: options.permissionsOf?.(op) ?? [],
      });
      if (product !== undefined) productCounts.set(product, (productCounts.get(product) ?? 0) + 1);
    }
    if (Object.keys(processedItem).length > 0) paths[template] = processedItem;
  }

  const products = [...productCounts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name]) => name);
  return { document: { paths }, operations, products };
}
