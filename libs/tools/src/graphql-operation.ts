import { Kind, parse } from 'graphql';
import type { OperationDefinitionNode } from 'graphql';
import { pathSegments } from './canonical-path.ts';

/**
 * Which GraphQL operation a request runs, read with the `graphql` package's parser. Only a
 * request that certainly runs a `query` is a read: an unparsable document, several
 * operations without `operationName`, an unknown or ambiguous name, or any body this
 * cannot read counts as a write.
 */

/** Keeps a hostile document from costing much parser time (Cloudflare's analytics queries are far smaller). */
const MAX_TOKENS = 20_000;

export interface GraphqlClassification {
  readonly access: 'read' | 'write';
  /** The operation the request selects, when exactly one is selected. */
  readonly operationType: 'query' | 'mutation' | 'subscription' | null;
  readonly operationName: string | null;
  /** Why a request counts as a write (for refusals), or what it reads. */
  readonly reason: string;
}

/**
 * True for any request to Cloudflare's GraphQL endpoint, whatever its method, so the rate
 * budget can count it as GraphQL. Takes a canonical path (`canonicalizePath`); the fixed
 * name is compared ignoring case, like a deny rule.
 */
export function isGraphqlRequest(request: { readonly path: string }): boolean {
  const segments = pathSegments(request.path);
  return segments.length === 1 && segments[0]?.toLowerCase() === 'graphql';
}

function write(reason: string, operation: OperationDefinitionNode | null = null): GraphqlClassification {
  return {
    access: 'write',
    operationType: operation?.operation ?? null,
    operationName: operation?.name?.value ?? null,
    reason,
  };
}

function selectOperation(
  operations: readonly OperationDefinitionNode[],
  operationName: unknown,
): OperationDefinitionNode | string {
  if (operations.length === 0) return 'the document has no operation';
  if (operations.length > 1 && operations.some((op) => !op.name)) {
    return 'the document mixes an anonymous operation with others';
  }
  if (operationName === undefined || operationName === null) {
    return operations.length === 1
      ? (operations[0] as OperationDefinitionNode)
      : 'the document has several operations and no operationName';
  }
  if (typeof operationName !== 'string') return 'operationName must be a string';
  const named = operations.filter((op) => op.name?.value === operationName);
  if (named.length === 0) return `the document has no operation named "${operationName.slice(0, 100)}"`;
  if (named.length > 1) return `the document has several operations named "${operationName.slice(0, 100)}"`;
  return named[0] as OperationDefinitionNode;
}

/** Classifies the JSON body of a GraphQL POST (`{query, operationName?, variables?}`). */
export function classifyGraphqlBody(body: unknown): GraphqlClassification {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return write('the body is not a GraphQL request object {query, operationName?, variables?}');
  }
  const { query, operationName } = body as { query?: unknown; operationName?: unknown };
  if (typeof query !== 'string') return write('the body has no "query" string');
  let operations: OperationDefinitionNode[];
  try {
    operations = parse(query, { noLocation: true, maxTokens: MAX_TOKENS }).definitions.filter(
      (d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION,
    );
  } catch {
    return write('the document does not parse as GraphQL');
  }
  const selected = selectOperation(operations, operationName);
  if (typeof selected === 'string') return write(selected);
  if (selected.operation !== 'query')
    return write(`the selected operation is a ${selected.operation}`, selected);
  return {
    access: 'read',
    operationType: 'query',
    operationName: selected.name?.value ?? null,
    reason: 'the selected operation is a query',
  };
}

/**
 * The operation a request to the GraphQL endpoint runs, whatever its method: a GET carries its
 * document in the URL (`query`, `operationName`), a POST in its body. A POST that also names a
 * document or an operation in its URL, or a GET that also carries a body, counts as a write
 * (which one the server runs is not Warden's to guess), as does any other method.
 */
export function classifyGraphqlRequest(request: {
  readonly method: string;
  readonly body?: unknown;
  readonly query?: Readonly<Record<string, unknown>>;
}): GraphqlClassification {
  const url = request.query ?? {};
  const inUrl = Object.hasOwn(url, 'query') || Object.hasOwn(url, 'operationName');
  const method = request.method.toUpperCase();
  if (method === 'GET') {
    if (request.body !== undefined) return write('a GET that also carries a body');
    return inUrl
      ? classifyGraphqlBody({ query: url.query, operationName: url.operationName })
      : write('a GET carries no GraphQL document in its URL');
  }
  if (method !== 'POST') return write(`a ${method} to the GraphQL endpoint`);
  if (inUrl) return write('the URL also names a GraphQL document or operation');
  return classifyGraphqlBody(request.body);
}
