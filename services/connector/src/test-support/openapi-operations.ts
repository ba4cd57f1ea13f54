/**
 * Warden's own /openapi.json as a list of operations, with a schema-valid example request for
 * each: what tests walk to hit every route and every parameter (unknown query parameters,
 * fuzzing) without a hand-kept list that could miss a route.
 */

export type JsonSchema = {
  readonly $ref?: string;
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly items?: JsonSchema;
  readonly oneOf?: readonly JsonSchema[];
  readonly anyOf?: readonly JsonSchema[];
  readonly allOf?: readonly JsonSchema[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly default?: unknown;
  readonly minimum?: number;
  readonly minLength?: number;
  readonly minItems?: number;
  readonly additionalProperties?: boolean | JsonSchema;
};

export interface OpenApiDocument {
  readonly paths: Record<string, Record<string, OperationObject>>;
  readonly components?: { readonly schemas?: Record<string, JsonSchema> };
}

interface OperationObject {
  readonly parameters?: ReadonlyArray<{
    readonly in: 'path' | 'query' | 'header';
    readonly name: string;
    readonly required?: boolean;
    readonly schema?: JsonSchema;
  }>;
  readonly requestBody?: {
    readonly required?: boolean;
    readonly content: Record<string, { readonly schema: JsonSchema }>;
  };
  readonly security?: ReadonlyArray<Record<string, unknown>>;
}

export interface Parameter {
  readonly name: string;
  readonly required: boolean;
  readonly schema: JsonSchema;
}

export interface Operation {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The OpenAPI template, `/api/v1/connected_accounts/{id}`. */
  readonly path: string;
  readonly pathParams: readonly Parameter[];
  readonly query: readonly Parameter[];
  readonly body: JsonSchema | null;
  readonly bodyRequired: boolean;
  readonly auth: 'tenant' | 'admin' | 'none';
}

export function resolveSchema(doc: OpenApiDocument, schema: JsonSchema): JsonSchema {
  let current = schema;
  for (let i = 0; current.$ref && i < 10; i++) {
    const name = current.$ref.replace('#/components/schemas/', '');
    const target = doc.components?.schemas?.[name];
    if (!target) throw new Error(`unresolved $ref ${current.$ref}`);
    current = target;
  }
  return current;
}

export function operationsOf(doc: OpenApiDocument): Operation[] {
  const operations: Operation[] = [];
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const params = op.parameters ?? [];
      const pick = (where: 'path' | 'query') =>
        params
          .filter((p) => p.in === where)
          .map((p) => ({ name: p.name, required: p.required === true, schema: p.schema ?? {} }));
      const security = op.security?.flatMap((s) => Object.keys(s)) ?? [];
      operations.push({
        method: method.toUpperCase() as Operation['method'],
        path,
        pathParams: pick('path'),
        query: pick('query'),
        body: op.requestBody?.content['application/json']?.schema ?? null,
        bodyRequired: op.requestBody?.required === true,
        auth: security.includes('adminToken') ? 'admin' : security.includes('tenantKey') ? 'tenant' : 'none',
      });
    }
  }
  return operations;
}

/**
 * A minimal value the schema accepts: required properties only, the first of each choice.
 * `named` supplies meaningful values by property name (an identifier that has an account, a
 * tool name) so requests get past validation into the handlers.
 */
export function exampleOf(
  doc: OpenApiDocument,
  schema: JsonSchema,
  named: Readonly<Record<string, unknown>> = {},
  name?: string,
): unknown {
  if (name !== undefined && name in named) return named[name];
  const s = resolveSchema(doc, schema);
  if (s.const !== undefined) return s.const;
  if (s.default !== undefined) return s.default;
  if (s.enum?.length) return s.enum[0];
  const choice = s.oneOf?.[0] ?? s.anyOf?.find((c) => resolveSchema(doc, c).type !== 'null');
  if (choice) return exampleOf(doc, choice, named, name);
  if (s.allOf?.[0]) return exampleOf(doc, s.allOf[0], named, name);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const key of s.required ?? []) {
        const property = s.properties?.[key];
        if (property) out[key] = exampleOf(doc, property, named, key);
      }
      return out;
    }
    case 'array': {
      const item = s.items ? exampleOf(doc, s.items, named) : 'x';
      return Array.from({ length: s.minItems ?? 0 }, () => item);
    }
    case 'integer':
    case 'number':
      return s.minimum ?? 1;
    case 'boolean':
      return false;
    case 'string':
      return 'x'.repeat(Math.max(1, s.minLength ?? 1));
    default:
      return {};
  }
}

/** `/api/v1/connected_accounts/{id}` with each parameter in place (values already percent-encoded). */
export function fillPath(template: string, values: Readonly<Record<string, string>>): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`no value for path parameter ${name}`);
    return value;
  });
}
