/**
 * Builds `sdk-methods.generated.ts` from the pinned `cloudflare` package (a devDependency: the
 * service only reads the committed table, so production installs do without its 120 MB) and an
 * OpenAPI document. Each resource's `api.md` lists its methods as
 *
 *     <code title="get /zones/{zone_id}/dns_records">client.dns.records.<a href="…">list</a>({ ...params }) -> RecordResponsesV4PagePaginationArray</code>
 *
 * which gives the name, verb, path, the arguments before `params` and, from the return type's
 * page class, how the method pages. The OpenAPI document adds the query parameters a POST, PUT or
 * PATCH declares and whether the operation is in it at all.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { processCloudflareSpec } from '@warden/cloudflare';
import type { HttpMethod } from '@warden/cloudflare';
import { RAW_BODY_ARG, formatSdkMethod, operationKeys, operationsByKey } from './sdk-methods.ts';
import type { AnnotatableDocument, Pagination, SdkMethod } from './sdk-methods.ts';

/** The SDK's page classes (`core/pagination`) and how Code Mode pages them. */
const PAGE_CLASSES: Readonly<Record<string, Pagination>> = {
  V4PagePaginationArray: 'page',
  V4PagePagination: 'page_items',
  CursorPagination: 'cursor',
  CursorLimitPagination: 'cursor',
  CursorPaginationAfter: 'cursor_after',
  PageTokenPagination: 'token',
  ContainersInstancesV1Pagination: 'instances',
  SinglePage: 'single',
};

const METHOD_LINE =
  /<code title="(get|post|put|patch|delete) ([^"]+)">client\.([\w.]+)\.<a [^>]*>(\w+)<\/a>\(([^)]*)\)(?: -> (.*?))?<\/code>/;

/** The directory of the `cloudflare` package this workspace pins. */
export function sdkPackageDir(): string {
  return path.dirname(createRequire(import.meta.url).resolve('cloudflare'));
}

function apiMdFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name === 'api.md')
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
}

/** The page classes the package declares; a class this generator does not know is an error. */
function pageClasses(packageDir: string): string[] {
  const declarations = readFileSync(path.join(packageDir, 'core', 'pagination.d.ts'), 'utf8');
  const classes = [...declarations.matchAll(/declare class (\w+)<Item> extends AbstractPage/g)].map(
    (m) => m[1] as string,
  );
  const unknown = classes.filter((name) => !(name in PAGE_CLASSES));
  if (unknown.length > 0)
    throw new Error(`unknown SDK page classes: ${unknown.join(', ')}; map them in PAGE_CLASSES`);
  // Longest first, so `…V4PagePaginationArray` is not taken for `…V4PagePagination`.
  return classes.sort((a, b) => b.length - a.length);
}

function paginationOf(returns: string, classes: readonly string[]): Pagination | null {
  const type = returns.trim();
  const page = classes.find((name) => type.endsWith(name));
  return page ? (PAGE_CLASSES[page] as Pagination) : null;
}

const normalized = (name: string) => name.toLowerCase().replace(/[-_]/g, '');

/**
 * `dnsRecordID, { ...params }` → `['dns_record_id']`; `objectKey, body, { ...params }` →
 * `['object_key', '$body']`; `namespaceID, [ ...body ]` → `['namespace_id']` and `body`.
 */
function argumentsOf(
  args: string,
  template: string,
  where: string,
): Pick<SdkMethod, 'positional' | 'arrayBody'> {
  const placeholders = [...template.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1] as string);
  const positional: string[] = [];
  let arrayBody: string | null = null;
  for (const arg of args.split(',').map((a) => a.trim())) {
    if (arg === '' || arg === '{ ...params }') continue;
    const array = /^\[ \.\.\.(\w+) \]$/.exec(arg);
    if (array) {
      arrayBody = array[1] as string;
      continue;
    }
    if (!/^\w+$/.test(arg)) throw new Error(`${where}: unexpected argument ${JSON.stringify(arg)}`);
    positional.push(placeholders.find((p) => normalized(p) === normalized(arg)) ?? RAW_BODY_ARG);
  }
  return { positional, arrayBody };
}

function queryParameters(operation: Record<string, unknown>): string[] {
  const parameters = Array.isArray(operation.parameters) ? (operation.parameters as unknown[]) : [];
  return parameters
    .filter(
      (p): p is { in: string; name: string } =>
        typeof p === 'object' && p !== null && (p as { in?: unknown }).in === 'query',
    )
    .map((p) => p.name);
}

export interface SdkTableSources {
  /** The `cloudflare` package directory (`sdkPackageDir()`). */
  readonly packageDir: string;
  /** The OpenAPI document the query parameters and spec-missing marks come from. */
  readonly specPath: string;
}

export interface SdkTable {
  readonly sdkVersion: string;
  readonly methods: readonly SdkMethod[];
  /** The content of `sdk-methods.generated.ts`. */
  readonly source: string;
}

export function generateSdkTable(sources: SdkTableSources): SdkTable {
  const { version } = JSON.parse(readFileSync(path.join(sources.packageDir, 'package.json'), 'utf8')) as {
    version: string;
  };
  const classes = pageClasses(sources.packageDir);
  const specBytes = readFileSync(sources.specPath);
  const document = processCloudflareSpec(JSON.parse(specBytes.toString('utf8')))
    .document as unknown as AnnotatableDocument;
  const operations = operationsByKey(document);

  const resources = path.join(sources.packageDir, 'src', 'resources');
  const methods: SdkMethod[] = [];
  const seen = new Set<string>();
  for (const file of apiMdFiles(resources)) {
    const lines = readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.includes('<code title='));
    for (const line of lines) {
      const where = path.relative(sources.packageDir, file);
      const match = METHOD_LINE.exec(line);
      if (!match)
        throw new Error(`${where}: a method line this generator cannot read: ${line.slice(0, 200)}`);
      const [, verb, template, resource, method, args, returns] = match as unknown as string[];
      const name = `${resource}.${method}`;
      if (seen.has(name)) throw new Error(`${where}: ${name} is listed twice`);
      seen.add(name);
      const httpMethod = (verb as string).toUpperCase() as HttpMethod;
      const found = operationKeys(httpMethod, template as string)
        .map((key) => operations.get(key))
        .filter((op) => op !== undefined);
      const query =
        httpMethod === 'GET' || httpMethod === 'DELETE'
          ? []
          : [...new Set(found.flatMap(queryParameters))].sort();
      methods.push({
        name,
        method: httpMethod,
        path: template as string,
        pagination: paginationOf(returns ?? '', classes),
        ...argumentsOf(args ?? '', template as string, `${where}: ${name}`),
        query,
        inSpec: found.length > 0,
      });
    }
  }
  methods.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const rows = methods.map(formatSdkMethod);
  const unsafe = rows.find((row) => /[`\\]|\$\{/.test(row));
  if (unsafe) throw new Error(`a method line cannot go into a template literal: ${unsafe}`);
  const specHash = createHash('sha256').update(specBytes).digest('hex').slice(0, 16);
  const source = `/**
 * Generated by \`npm run sdk-methods:generate\` from cloudflare@${version} (its api.md files) and
 * the OpenAPI document with SHA-256 ${specHash}…; do not edit. The format is described in
 * sdk-methods.ts. ${methods.length} methods, ${methods.filter((m) => !m.inSpec).length} of them spec-missing.
 */
export const SDK_PACKAGE_VERSION = '${version}';

export const SDK_METHODS_TABLE = \`
${rows.join('\n')}
\`;
`;
  return { sdkVersion: version, methods, source };
}
