import { describe, expect, it } from 'vitest';
import {
  CIRCULAR_REF_KEY,
  UNRESOLVED_REF_KEY,
  createRefResolver,
  processOpenApi,
} from './openapi-processor.ts';

const petSchema = {
  type: 'object',
  properties: { id: { $ref: '#/components/schemas/Id' }, name: { type: 'string' } },
};

function document(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    openapi: '3.0.3',
    info: { title: 't', version: '1' },
    paths: {
      '/pets/{pet_id}': {
        parameters: [
          { $ref: '#/components/parameters/PetId' },
          { name: 'trace', in: 'header', schema: { type: 'string' } },
        ],
        get: {
          summary: 'Get a pet',
          operationId: 'getPet',
          tags: ['Pet store'],
          'x-perm': { enum: ['pets:read'] },
          'x-dropped': true,
          parameters: [{ name: 'trace', in: 'header', required: true, schema: { type: 'integer' } }],
          responses: { '200': { $ref: '#/components/responses/Pet' } },
        },
        delete: { responses: { '204': { description: 'gone' } } },
        summary: 'not an operation',
      },
      ...extra,
    },
    components: {
      schemas: {
        Id: { type: 'string', maxLength: 32 },
        Pet: petSchema,
        Node: {
          type: 'object',
          properties: { children: { type: 'array', items: { $ref: '#/components/schemas/Node' } } },
        },
        'a/b~c': { const: 'escaped' },
      },
      parameters: {
        PetId: { name: 'pet_id', in: 'path', required: true, schema: { $ref: '#/components/schemas/Id' } },
      },
      responses: {
        Pet: {
          description: 'a pet',
          content: { 'application/json': { schema: { $ref: '#/components/schemas/Pet' } } },
        },
      },
    },
  };
}

describe('createRefResolver', () => {
  it('inlines nested references and JSON-pointer escapes', () => {
    const doc = document();
    const resolve = createRefResolver(doc);
    expect(resolve({ $ref: '#/components/responses/Pet' })).toEqual({
      description: 'a pet',
      content: {
        'application/json': {
          schema: {
            type: 'object',
            properties: { id: { type: 'string', maxLength: 32 }, name: { type: 'string' } },
          },
        },
      },
    });
    expect(resolve({ $ref: '#/components/schemas/a~1b~0c' })).toEqual({ const: 'escaped' });
  });

  it('cuts a cycle with a marker at the point where the reference repeats', () => {
    const resolve = createRefResolver(document());
    expect(resolve({ $ref: '#/components/schemas/Node' })).toEqual({
      type: 'object',
      properties: { children: { type: 'array', items: { [CIRCULAR_REF_KEY]: '#/components/schemas/Node' } } },
    });
  });

  it('expands a reference used twice side by side twice (a repeat is not a cycle)', () => {
    const resolve = createRefResolver(document());
    const out = resolve({ a: { $ref: '#/components/schemas/Id' }, b: { $ref: '#/components/schemas/Id' } });
    expect(out).toEqual({ a: { type: 'string', maxLength: 32 }, b: { type: 'string', maxLength: 32 } });
  });

  it('rebuilds expansions that depend on their ancestors, so each cycle is cut at the shortest point', () => {
    const doc = {
      components: {
        schemas: {
          A: { properties: { b: { $ref: '#/components/schemas/B' } } },
          B: { properties: { a: { $ref: '#/components/schemas/A' } } },
        },
      },
    };
    const resolve = createRefResolver(doc);
    expect(resolve({ $ref: '#/components/schemas/A' })).toEqual({
      properties: { b: { properties: { a: { [CIRCULAR_REF_KEY]: '#/components/schemas/A' } } } },
    });
    expect(resolve({ $ref: '#/components/schemas/B' })).toEqual({
      properties: { a: { properties: { b: { [CIRCULAR_REF_KEY]: '#/components/schemas/B' } } } },
    });
  });

  it('marks references it cannot follow and applies sibling overrides', () => {
    const resolve = createRefResolver(document());
    expect(resolve({ $ref: 'other.json#/x' })).toEqual({ [UNRESOLVED_REF_KEY]: 'other.json#/x' });
    expect(resolve({ $ref: '#/components/schemas/Missing' })).toEqual({
      [UNRESOLVED_REF_KEY]: '#/components/schemas/Missing',
    });
    expect(resolve({ $ref: '#/components/schemas/Id', description: 'the pet id' })).toEqual({
      type: 'string',
      maxLength: 32,
      description: 'the pet id',
    });
  });
});

describe('processOpenApi', () => {
  it('keeps what an agent needs per operation, with path-level parameters merged', () => {
    const processed = processOpenApi(document(), {
      productOf: (p) => p.split('/')[1],
      keepExtensions: ['x-perm'],
      permissionsOf: (op) => (op['x-perm'] as { enum: string[] } | undefined)?.enum ?? [],
    });
    const get = processed.document.paths['/pets/{pet_id}']?.get;
    expect(get).toEqual({
      summary: 'Get a pet',
      operationId: 'getPet',
      tags: ['pets', 'Pet store'],
      parameters: [
        { name: 'pet_id', in: 'path', required: true, schema: { type: 'string', maxLength: 32 } },
        { name: 'trace', in: 'header', required: true, schema: { type: 'integer' } },
      ],
      responses: { '200': expect.objectContaining({ description: 'a pet' }) },
      'x-perm': { enum: ['pets:read'] },
    });
    expect(Object.keys(processed.document.paths['/pets/{pet_id}'] ?? {})).toEqual(['get', 'delete']);
    expect(JSON.stringify(processed.document)).not.toContain('$ref');
    expect(processed.operations).toEqual([
      {
        method: 'GET',
        path: '/pets/{pet_id}',
        operationId: 'getPet',
        summary: 'Get a pet',
        product: 'pets',
        tags: ['pets', 'Pet store'],
        permissions: ['pets:read'],
      },
      { method: 'DELETE', path: '/pets/{pet_id}', product: 'pets', tags: ['pets'], permissions: [] },
    ]);
    expect(processed.products).toEqual(['pets']);
  });

  it('does not repeat a product already among the tags and orders products by size', () => {
    const processed = processOpenApi(
      document({
        '/stores': { get: { tags: ['STORES'], responses: {} } },
        '/owners': { get: { responses: {} }, post: { responses: {} } },
      }),
      { productOf: (p) => p.split('/')[1] },
    );
    expect(processed.document.paths['/stores']?.get?.tags).toEqual(['STORES']);
    expect(processed.products).toEqual(['owners', 'pets', 'stores']);
  });

  it('refuses something that is not an OpenAPI document', () => {
    expect(() => processOpenApi({ openapi: '3.0.0' })).toThrow(/paths/);
  });
});
