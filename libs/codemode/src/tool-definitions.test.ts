import { readFileSync } from 'node:fs';
import { getEncoding } from 'js-tiktoken';
import { describe, expect, it } from 'vitest';
import { processCloudflareSpec } from '@warden/cloudflare';
import { toolDefinitions, toolsListJson } from './tool-definitions.ts';
import { specFixturePath } from '@warden/testing';

const realDocument = specFixturePath();
const o200k = getEncoding('o200k_base');

function tokens(definitions: ReturnType<typeof toolDefinitions>): number {
  return o200k.encode(toolsListJson(definitions)).length;
}

describe('toolDefinitions', () => {
  const { products } = processCloudflareSpec(JSON.parse(readFileSync(realDocument, 'utf8')));

  it('describes both tools with their input schemas, the biggest products and both call styles', () => {
    const [search, execute] = toolDefinitions({ products });
    expect(search.name).toBe('cloudflare_search');
    expect(search.inputSchema).toEqual({
      type: 'object',
      properties: { code: { type: 'string', description: expect.any(String) } },
      required: ['code'],
      additionalProperties: false,
    });
    expect(execute.name).toBe('cloudflare_execute');
    expect(Object.keys(execute.inputSchema.properties)).toEqual(['code', 'account_id', 'approval_id']);
    const listed = products.filter((product) => search.description.includes(`, ${product},`));
    expect(listed.length).toBeGreaterThan(50);
    expect(search.description).toContain(`Products: ${products[0]}, `);
    expect(search.description).toContain(`and ${products.length - listed.length - 2} more`);
    expect(execute.description).toContain('cloudflare.request(');
    // The SDK style, with one example each.
    expect(search.description).toContain("spec.sdk['dns.records.create'].operation.requestBody");
    expect(execute.description).toContain('cloudflare.dns.records.list({zone_id})');
    expect(execute.description).toContain(
      'for await (const r of cloudflare.dns.records.list({ zone_id: zone.id }))',
    );
  });

  it('says exactly what a call returns, logs included', () => {
    const returns =
      'Returns the value as JSON (cut when large) and console.log lines as logs (MCP: a second text block; ≤16 KB).';
    for (const definition of toolDefinitions({ products })) expect(definition.description).toContain(returns);
    expect(toolDefinitions({ products, limits: { maxLogChars: 4096 } })[1].description).toContain('≤4 KB');
  });

  it('costs at most 1,000 o200k tokens as tools/list sends them, even for a much larger API', () => {
    expect(tokens(toolDefinitions({ products }))).toBeLessThanOrEqual(1_000);
    const many = Array.from({ length: 400 }, (_, i) => `product_number_${i}`);
    const large = toolDefinitions({
      products: many,
      readOnly: true,
      policySummary: 'Policy for this identity: read-only (GET requests and GraphQL queries only).',
    });
    expect(large[0].description).toMatch(/and \d+ more/);
    expect(tokens(large)).toBeLessThanOrEqual(1_000);
  });

  it('states read-only access, the policy summary and the real limits in the execute description', () => {
    const [, execute] = toolDefinitions({
      products,
      readOnly: true,
      policySummary: 'Writes only to /zones/**.',
      limits: { maxUpstreamRequests: 20, wallMs: 10_000 },
    });
    expect(execute.description).toContain('Read-only: only GET requests are allowed.');
    expect(execute.description).toContain('Writes only to /zones/**.');
    expect(execute.description).toContain('At most 20 requests and 10 s per call.');
    expect(toolDefinitions({ products })[1].description).toContain('At most 50 requests and 30 s per call.');
  });
});
