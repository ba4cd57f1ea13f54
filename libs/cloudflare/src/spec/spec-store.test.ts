import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { cloudflareProductOf } from './cloudflare-spec.ts';
import { createSpecStore } from './spec-store.ts';
import type { ProcessedDocument } from './openapi-processor.ts';
import { specFixturePath } from '@warden/testing';

const realDocument = specFixturePath();

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'warden-spec-'));
}

function tinyDocument(summary: string): string {
  return JSON.stringify({
    openapi: '3.0.3',
    paths: {
      '/zones/{zone_id}/dns_records': {
        get: {
          summary,
          tags: ['DNS Records for a Zone'],
          'x-cfPermissionsRequired': { enum: ['#dns_records:read'] },
          responses: { '200': { $ref: '#/components/responses/ok' } },
        },
      },
    },
    components: { responses: { ok: { description: 'ok' } } },
  });
}

interface FakeServer {
  fetch: typeof fetch;
  body: string;
  requests: Array<Record<string, string>>;
  down: boolean;
}

function fakeServer(body: string): FakeServer {
  const server: FakeServer = {
    body,
    requests: [],
    down: false,
    fetch: (async (_url: string | URL | Request, init?: RequestInit) => {
      const headers = (init?.headers ?? {}) as Record<string, string>;
      server.requests.push(headers);
      if (server.down) throw new TypeError('fetch failed');
      const etag = `"${server.body.length}-${server.body.charCodeAt(80)}"`;
      if (headers['if-none-match'] === etag) return new Response(null, { status: 304 });
      return new Response(server.body, {
        status: 200,
        headers: { etag, 'content-type': 'application/json' },
      });
    }) as typeof fetch,
  };
  return server;
}

describe('cloudflareProductOf', () => {
  it('takes the segment after the account or zone, else the first segment', () => {
    expect(cloudflareProductOf('/accounts/{account_id}/workers/scripts')).toBe('workers');
    expect(cloudflareProductOf('/zones/{zone_identifier}/dns_records/{id}')).toBe('dns_records');
    expect(cloudflareProductOf('/zones/{zone_id}')).toBe('zones');
    expect(cloudflareProductOf('/accounts')).toBe('accounts');
    expect(cloudflareProductOf('/radar/http/summary/os')).toBe('radar');
    expect(cloudflareProductOf('/')).toBeUndefined();
  });
});

describe('spec store', () => {
  it('processes the real document from a file, caches it and answers operation lookups', async () => {
    const cacheDir = tempDir();
    const store = createSpecStore({ path: realDocument, cacheDir });
    const spec = await store.load();
    expect(spec.operations).toHaveLength(1533);
    expect(spec.products.slice(0, 3)).toEqual(['radar', 'access', 'workers']);
    expect(spec.products).toContain('dns_records');

    const document = v8.deserialize(readFileSync(spec.documentFile)) as ProcessedDocument;
    const list = document.paths['/zones/{zone_id}/dns_records']?.get;
    expect(list?.summary).toBe('List DNS Records');
    expect(list?.tags[0]).toBe('dns_records');
    expect(JSON.stringify(list)).not.toContain('$ref');

    expect(store.products()).toBe(spec.products);
    const match = store.findOperation(
      'DELETE',
      '/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records/372e67954025',
    );
    expect(match?.operation).toMatchObject({
      method: 'DELETE',
      path: '/zones/{zone_id}/dns_records/{dns_record_id}',
      product: 'dns_records',
    });
    expect(match?.params).toEqual({
      zone_id: '023e105f4ecef8ad9ca31a8372d0c353',
      dns_record_id: '372e67954025',
    });
    const withPermissions = spec.operations.find((o) => o.permissions.length > 0);
    expect(withPermissions?.permissions.every((p) => typeof p === 'string')).toBe(true);

    // A second store (a restart) finds the processed form in the cache instead of processing again.
    const restarted = createSpecStore({ path: realDocument, cacheDir });
    const again = await restarted.load();
    expect(again.version).toBe(spec.version);
    expect(again.operations).toEqual(spec.operations);
    expect(readdirSync(cacheDir).filter((f) => f.endsWith('.v8'))).toHaveLength(1);
  });

  it('reloads a changed file without a restart and tells listeners', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'openapi.json');
    writeFileSync(file, tinyDocument('first'));
    const store = createSpecStore({ path: file, cacheDir: path.join(dir, 'cache') });
    const first = await store.load();
    const seen: string[] = [];
    store.onChange((spec) => seen.push(spec.version));

    expect((await store.reload()).changed).toBe(false);
    writeFileSync(file, tinyDocument('second'));
    const reloaded = await store.reload();
    expect(reloaded.changed).toBe(true);
    expect(reloaded.spec.version).not.toBe(first.version);
    expect(store.current().operations[0]?.summary).toBe('second');
    expect(seen).toEqual([reloaded.spec.version]);
  });

  it('keeps serving the current document when a reload finds a broken one', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'openapi.json');
    writeFileSync(file, tinyDocument('good'));
    const store = createSpecStore({ path: file, cacheDir: path.join(dir, 'cache') });
    const good = await store.load();
    writeFileSync(file, '{"openapi": "3.0.3"');
    await expect(store.reload()).rejects.toMatchObject({ code: 'unavailable' });
    expect(store.current().version).toBe(good.version);
    expect(existsSync(good.documentFile)).toBe(true);
  });

  it('fetches from a URL with a conditional request and falls back to the cache when unreachable', async () => {
    const cacheDir = tempDir();
    const server = fakeServer(tinyDocument('from the web'));
    const url = 'https://specs.example/openapi.json';
    const store = createSpecStore({ url, cacheDir, fetch: server.fetch });
    const loaded = await store.load();
    expect(loaded.source).toBe(url);
    expect(loaded.operations[0]?.summary).toBe('from the web');

    expect((await store.reload()).changed).toBe(false);
    expect(server.requests[1]?.['if-none-match']).toBeDefined();

    server.down = true;
    await expect(store.reload()).rejects.toBeInstanceOf(WardenError);
    const restarted = createSpecStore({ url, cacheDir, fetch: server.fetch });
    expect((await restarted.load()).version).toBe(loaded.version);
  });

  it('fails with unavailable when nothing is cached and the source cannot be read', async () => {
    const store = createSpecStore({ path: path.join(tempDir(), 'missing.json'), cacheDir: tempDir() });
    await expect(store.load()).rejects.toMatchObject({ code: 'unavailable' });
    expect(() => store.current()).toThrow(WardenError);
    expect(() => store.findOperation('GET', '/zones')).toThrow(WardenError);
    expect(() => createSpecStore({ cacheDir: tempDir() })).toThrow(/exactly one/);
  });
});
