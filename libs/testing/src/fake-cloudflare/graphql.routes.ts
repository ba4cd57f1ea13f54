import type { RouteDefinition, RouteResult } from './fake-cloudflare.router.ts';
import { GqlSyntaxError, literalValue, parseGraphql } from './graphql.parser.ts';
import { executeQuery, GqlError } from './graphql.resolvers.ts';

function errors(
  status: number,
  message: string,
  code: string,
  path: readonly (string | number)[] | null,
  now: Date,
): RouteResult {
  return {
    kind: 'json',
    status,
    body: { data: null, errors: [{ message, path, extensions: { code, timestamp: now.toISOString() } }] },
  };
}

/**
 * The GraphQL Analytics API: `{query, variables, operationName}` in, `{data, errors}` out.
 * Read-only (mutations are refused); analytics permissions are checked per zone/account
 * inside the query and reported as GraphQL errors, with HTTP 200 like the real endpoint.
 */
export const graphqlRoutes: readonly RouteDefinition[] = [
  {
    method: 'POST',
    path: '/graphql',
    fallbackPermissions: ['#analytics:read'],
    resource: 'none',
    handler: (ctx) => {
      let request: { query?: unknown; variables?: unknown; operationName?: unknown };
      try {
        request = JSON.parse(ctx.body.toString('utf8')) as typeof request;
      } catch {
        return errors(400, 'failed to parse the request body as JSON', 'BAD_REQUEST', null, ctx.now);
      }
      if (!request || typeof request.query !== 'string' || request.query.trim() === '') {
        return errors(
          400,
          'the request body must be {"query": "...", "variables": {...}}',
          'BAD_REQUEST',
          null,
          ctx.now,
        );
      }
      const variables =
        request.variables && typeof request.variables === 'object' && !Array.isArray(request.variables)
          ? (request.variables as Record<string, unknown>)
          : {};
      try {
        const document = parseGraphql(request.query);
        const operation =
          typeof request.operationName === 'string'
            ? document.operations.find((o) => o.name === request.operationName)
            : document.operations.length === 1
              ? document.operations[0]
              : undefined;
        if (!operation) {
          throw new GqlError(
            'Must provide a valid operationName for a document with several operations.',
            'GRAPHQL_VALIDATION_FAILED',
          );
        }
        if (operation.type !== 'query') {
          throw new GqlError(
            `${operation.type}s are not supported: the GraphQL Analytics API is read-only`,
            'GRAPHQL_VALIDATION_FAILED',
          );
        }
        const resolved: Record<string, unknown> = {};
        for (const name of operation.variableNames) {
          const fallback = operation.variableDefaults[name];
          resolved[name] = variables[name] ?? (fallback ? literalValue(fallback) : null);
        }
        const env = {
          state: ctx.state,
          principal: ctx.principal,
          permissions: ctx.permissions,
          now: ctx.now,
          variables: resolved,
          fragments: document.fragments,
        };
        const data = executeQuery(operation.selections, env);
        return { kind: 'json', status: 200, body: { data, errors: null } };
      } catch (error) {
        if (error instanceof GqlSyntaxError)
          return errors(200, error.message, 'GRAPHQL_PARSE_FAILED', null, ctx.now);
        if (error instanceof GqlError) return errors(200, error.message, error.code, error.path, ctx.now);
        throw error;
      }
    },
  },
];
