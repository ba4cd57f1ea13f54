import { describe, expect, it } from 'vitest';
import { classifyGraphqlBody, classifyGraphqlRequest, isGraphqlRequest } from './graphql-operation.ts';

describe('classifyGraphqlBody', () => {
  it.each([
    ['an anonymous query', { query: '{ viewer { zones { zoneTag } } }' }, 'read'],
    ['a named query', { query: 'query Q { viewer { a } }' }, 'read'],
    ['a query with a fragment', { query: 'query Q { viewer { ...F } } fragment F on Viewer { a }' }, 'read'],
    [
      'the selected query of several',
      { query: 'query A { a } mutation B { b }', operationName: 'A' },
      'read',
    ],
    ['a string that mentions mutation', { query: '{ a(filter: "mutation { x }") }' }, 'read'],
    ['a mutation', { query: 'mutation { x }' }, 'write'],
    ['a mutation after a comment', { query: '# comment\n mutation M { x }' }, 'write'],
    ['a subscription', { query: 'subscription S { x }' }, 'write'],
    // The case: commas are whitespace in GraphQL, so this is two operations.
    [
      'the comma case',
      { query: 'query Q{viewer{a}},mutation M{deleteEverything}', operationName: 'M' },
      'write',
    ],
    ['several operations, no operationName', { query: 'query A { a } query B { b }' }, 'write'],
    ['an unknown operationName', { query: 'query A { a }', operationName: 'B' }, 'write'],
    ['an ambiguous operationName', { query: 'query A { a } mutation A { b }', operationName: 'A' }, 'write'],
    ['an anonymous operation among others', { query: '{ a } mutation M { b }', operationName: 'M' }, 'write'],
    ['a non-string operationName', { query: 'query A { a }', operationName: 1 }, 'write'],
    ['only fragments', { query: 'fragment F on Viewer { a }' }, 'write'],
    ['a document that does not parse', { query: 'query { a ' }, 'write'],
    ['no query', {}, 'write'],
    ['a batch', [{ query: '{ a }' }], 'write'],
    ['no body', undefined, 'write'],
  ])('%s is a %s', (_name, body, access) => {
    expect(classifyGraphqlBody(body).access).toBe(access);
  });

  it('names the operation and why a request counts as a write', () => {
    expect(classifyGraphqlBody({ query: 'query Q{viewer{a}},mutation M{b}', operationName: 'M' })).toEqual({
      access: 'write',
      operationType: 'mutation',
      operationName: 'M',
      reason: 'the selected operation is a mutation',
    });
    expect(classifyGraphqlBody({ query: 'query A { a }', operationName: 'B' }).reason).toBe(
      'the document has no operation named "B"',
    );
  });

  it('refuses to parse a huge document as a read', () => {
    const query = `{ ${Array.from({ length: 25_000 }, (_, i) => `f${i}`).join(' ')} }`;
    expect(classifyGraphqlBody({ query })).toMatchObject({
      access: 'write',
      reason: 'the document does not parse as GraphQL',
    });
  });

  it('classifies a GET by its URL, and a POST that also names a document or operation in its URL as a write', () => {
    const read = { query: '{ viewer { zones { zoneTag } } }' };
    expect(classifyGraphqlRequest({ method: 'GET', query: read }).access).toBe('read');
    expect(classifyGraphqlRequest({ method: 'get', query: { query: 'mutation M { x }' } }).access).toBe(
      'write',
    );
    expect(classifyGraphqlRequest({ method: 'GET' }).access).toBe('write');
    expect(
      classifyGraphqlRequest({ method: 'GET', query: read, body: { query: 'mutation { x }' } }).access,
    ).toBe('write');
    expect(classifyGraphqlRequest({ method: 'POST', body: read }).access).toBe('read');
    expect(
      classifyGraphqlRequest({ method: 'POST', body: read, query: { query: 'mutation { x }' } }).access,
    ).toBe('write');
    expect(classifyGraphqlRequest({ method: 'POST', body: read, query: { operationName: 'M' } }).access).toBe(
      'write',
    );
    expect(classifyGraphqlRequest({ method: 'POST', body: read, query: { page: 1 } }).access).toBe('read');
    expect(classifyGraphqlRequest({ method: 'PUT', body: read }).access).toBe('write');
  });

  it('recognises requests to the GraphQL endpoint for the rate budget', () => {
    expect(isGraphqlRequest({ path: '/graphql' })).toBe(true);
    expect(isGraphqlRequest({ path: '/GraphQL' })).toBe(true);
    expect(isGraphqlRequest({ path: '/zones/graphql' })).toBe(false);
    expect(isGraphqlRequest({ path: '/graphql/x' })).toBe(false);
  });
});
