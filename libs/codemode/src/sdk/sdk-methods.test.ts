import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createOperationMatcher, processCloudflareSpec } from '@warden/cloudflare';
import { realDocument } from '../test-support/fixtures.ts';
import { pinnedSdkMethods } from './pinned-sdk-methods.ts';
import { SDK_PACKAGE_VERSION } from './sdk-methods.generated.ts';
import { generateSdkTable, sdkPackageDir } from './sdk-methods.generator.ts';
import { SdkMethods, annotateSdk, formatSdkMethod, operationKeys, parseSdkMethod } from './sdk-methods.ts';
import type { AnnotatableDocument, SdkMethod } from './sdk-methods.ts';

const GENERATED = fileURLToPath(new URL('./sdk-methods.generated.ts', import.meta.url));
const methods = pinnedSdkMethods.methods();
const byName = new Map(methods.map((m) => [m.name, m]));

function method(name: string): SdkMethod {
  const found = byName.get(name);
  if (!found) throw new Error(`${name} is not in the table`);
  return found;
}

describe('the SDK method table', () => {
  it('is what the generator makes from the pinned cloudflare package (run `npm run sdk-methods:generate`)', () => {
    const pinned = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      devDependencies: Record<string, string>;
    };
    expect(pinned.devDependencies.cloudflare).toBe(SDK_PACKAGE_VERSION);
    const fresh = generateSdkTable({ packageDir: sdkPackageDir(), specPath: realDocument }).source;
    const committed = readFileSync(GENERATED, 'utf8');
    if (fresh === committed) return;
    const freshLines = fresh.split('\n');
    const committedLines = committed.split('\n');
    const at = freshLines.findIndex((line, i) => line !== committedLines[i]);
    expect.fail(
      `sdk-methods.generated.ts is stale: run \`npm run sdk-methods:generate\` and commit the result ` +
        `(first difference at line ${at + 1}: committed ${JSON.stringify(committedLines[at] ?? '<end>')}, ` +
        `generated ${JSON.stringify(freshLines[at] ?? '<end>')})`,
    );
  });

  it('reads names, verbs, paths, arguments and pagination from the api.md files', () => {
    expect(methods.length).toBeGreaterThan(2_500);
    expect(method('dns.records.list')).toMatchObject({
      method: 'GET',
      path: '/zones/{zone_id}/dns_records',
      pagination: 'page',
      positional: [],
    });
    expect(method('dns.records.delete')).toMatchObject({ method: 'DELETE', positional: ['dns_record_id'] });
    expect(method('workers.scripts.list')).toMatchObject({
      path: '/accounts/{account_id}/workers/scripts',
      pagination: 'single',
    });
    expect(method('zones.holds.create')).toMatchObject({ method: 'POST', query: ['include_subdomains'] });
    expect(method('r2.buckets.objects.upload').positional).toEqual(['object_key', '$body']);
    expect(method('kv.namespaces.keys.bulkUpdate')).toMatchObject({
      positional: ['namespace_id'],
      arrayBody: 'body',
    });
    expect(method('rulesets.create').path).toBe('/{accounts_or_zones}/{account_or_zone_id}/rulesets');
    const kinds = new Set(methods.map((m) => m.pagination));
    expect([...kinds].sort()).toEqual(
      ['cursor', 'cursor_after', 'instances', 'page', 'page_items', 'single', 'token', null].sort(),
    );
    // Every non-GET/DELETE query parameter comes from the document; reads never need them.
    expect(
      methods.filter((m) => (m.method === 'GET' || m.method === 'DELETE') && m.query.length > 0),
    ).toEqual([]);
  });

  it('maps every method to an operation of the bundled OpenAPI document, or lists it as spec-missing', () => {
    const processed = processCloudflareSpec(JSON.parse(readFileSync(realDocument, 'utf8')));
    // Cross-checked with the matcher the audit trail uses for concrete request paths: a method
    // maps when its request lands on an operation with the same path shape. A request may also
    // land on a generic operation (`/zones/{zone_id}/settings/{setting_id}` serves
    // `zones.settings.*`); such methods stay spec-missing, since no operation is theirs.
    const match = createOperationMatcher(processed.operations);
    const mapped = (m: SdkMethod) => {
      const keys = operationKeys(m.method, m.path);
      return keys.some((key) => {
        const operation = match(m.method, key.slice(key.indexOf(' ') + 1).replace(/\{\}/g, 'x1'))?.operation;
        return (
          operation !== undefined && keys.includes(operationKeys(operation.method, operation.path)[0] ?? '')
        );
      });
    };
    const wrong = methods
      .filter((m) => mapped(m) !== m.inSpec)
      .map((m) => `${m.name} (${m.inSpec ? '+' : '-'})`);
    expect(wrong).toEqual([]);
    const missing = methods.filter((m) => !m.inSpec).length;
    expect(missing).toBeGreaterThan(0);
    expect(methods.length - missing).toBeGreaterThan(1_000);

    const document = processed.document as unknown as AnnotatableDocument;
    expect(annotateSdk(document, methods)).toBe(methods.length - missing);
    expect(document.paths['/zones/{zone_id}/dns_records']?.get?.sdk).toBe('dns.records.list');
    expect(document.sdk?.['dns.records.list']).toMatchObject({
      method: 'GET',
      path: '/zones/{zone_id}/dns_records',
      operation: { summary: 'List DNS Records' },
    });
    expect(document.sdk?.['workers.beta.workers.list']).toEqual({
      method: 'GET',
      path: '/accounts/{account_id}/workers/workers',
    });
  });
});

describe('table lines', () => {
  it('round-trip and refuse malformed lines', () => {
    for (const m of methods.slice(0, 200)) expect(parseSdkMethod(formatSdkMethod(m))).toEqual(m);
    expect(() => parseSdkMethod('dns.records.list GET /zones page - +')).toThrow(/not an SDK method line/);
    expect(() => parseSdkMethod('dns.records.list FETCH /zones - - - +')).toThrow(/not an SDK method line/);
    expect(() => parseSdkMethod('dns.records.list GET /zones paged - - +')).toThrow(/not an SDK method line/);
  });

  it('stand for both roots of an account-or-zone path', () => {
    expect(operationKeys('get', '/zones/{zone_id}/dns_records/')).toEqual(['GET /zones/{}/dns_records']);
    expect(operationKeys('POST', '/{accounts_or_zones}/{account_or_zone_id}/rulesets')).toEqual([
      'POST /accounts/{}/rulesets',
      'POST /zones/{}/rulesets',
    ]);
  });

  it('describe what an isolate needs, only for names the table has', () => {
    const sdk = new SdkMethods(
      'a.list GET /a/{a_id}/items page - - +\na.create POST /a/{a_id}/items - - dry_run -\n',
    );
    expect(sdk.describe('a.list')).toEqual({
      method: 'GET',
      path: '/a/{a_id}/items',
      pagination: 'page',
      positional: [],
      arrayBody: null,
      query: [],
    });
    expect(sdk.describe('a.create')?.query).toEqual(['dry_run']);
    expect(sdk.describe('a')).toBeNull();
    expect(sdk.describe(42)).toBeNull();
    expect(sdk.names()).toBe('a.list a.create');
  });
});
