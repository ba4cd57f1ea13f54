import { readFile } from 'node:fs/promises';

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** What the OpenAPI document says about one operation's permissions. */
export type SpecPermissionLookup =
  | { readonly found: false }
  | {
      readonly found: true;
      readonly operationId: string | null;
      readonly permissions: readonly string[] | null;
    };

export interface SpecPermissionIndex {
  lookup(method: string, pathTemplate: string): SpecPermissionLookup;
  /** Every key any operation lists in `x-cfPermissionsRequired.enum`. */
  readonly vocabulary: ReadonlySet<string>;
}

/** `/accounts/{account_identifier}/x` and `/accounts/{account_id}/x` are the same route. */
function normalizeTemplate(pathTemplate: string): string {
  return pathTemplate.replace(/\{[^}]+\}/g, '{}').replace(/\/+$/, '');
}

export async function readSpecFile(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8')) as unknown;
}

/** Built once at start, so requests never scan the 4 MB document. */
export function indexSpecPermissions(spec: unknown): SpecPermissionIndex {
  const paths = (spec as { paths?: unknown } | null)?.paths;
  if (!paths || typeof paths !== 'object')
    throw new Error('fake Cloudflare: the OpenAPI document has no paths');
  const operations = new Map<string, { operationId: string | null; permissions: readonly string[] | null }>();
  const vocabulary = new Set<string>();
  for (const [template, item] of Object.entries(paths as Record<string, unknown>)) {
    if (!item || typeof item !== 'object') continue;
    for (const method of METHODS) {
      const operation = (item as Record<string, unknown>)[method];
      if (!operation || typeof operation !== 'object') continue;
      const op = operation as Record<string, unknown>;
      const required = op['x-cfPermissionsRequired'] as { enum?: unknown } | undefined;
      const permissions = Array.isArray(required?.enum)
        ? required.enum.filter((p): p is string => typeof p === 'string')
        : null;
      for (const p of permissions ?? []) vocabulary.add(p);
      const key = `${method.toUpperCase()} ${normalizeTemplate(template)}`;
      if (!operations.has(key)) {
        operations.set(key, {
          operationId: typeof op.operationId === 'string' ? op.operationId : null,
          permissions,
        });
      }
    }
  }
  return {
    vocabulary,
    lookup(method, pathTemplate) {
      const entry = operations.get(`${method.toUpperCase()} ${normalizeTemplate(pathTemplate)}`);
      return entry ? { found: true, ...entry } : { found: false };
    },
  };
}
