import { processOpenApi } from './openapi-processor.ts';
import type { ProcessedOpenApi } from './openapi-processor.ts';

/** Token permission groups an operation needs, as Cloudflare's document declares them. */
export const CLOUDFLARE_PERMISSIONS_EXTENSION = 'x-cfPermissionsRequired';

const SCOPED_ROOTS = new Set(['accounts', 'zones']);

/**
 * Cloudflare's product for a path template: the segment after `{account_id}` or `{zone_id}`
 * (`/accounts/{account_id}/workers/scripts` → `workers`), else the first segment
 * (`/radar/http/summary` → `radar`, `/zones/{zone_id}` → `zones`). The document spells the
 * identifier parameters several ways (`{account_identifier}`, `{zone_id}`, `{identifier}`),
 * so any `{...}` segment counts.
 */
export function cloudflareProductOf(template: string): string | undefined {
  const segments = template.split('/').filter((s) => s !== '');
  const [root, id, product] = segments;
  if (root === undefined) return undefined;
  if (SCOPED_ROOTS.has(root) && id?.startsWith('{') && product !== undefined && !product.startsWith('{')) {
    return product;
  }
  return root.startsWith('{') ? undefined : root;
}

export function cloudflarePermissionsOf(operation: Readonly<Record<string, unknown>>): readonly string[] {
  const declared = operation[CLOUDFLARE_PERMISSIONS_EXTENSION];
  if (typeof declared !== 'object' || declared === null) return [];
  const values = (declared as { enum?: unknown }).enum;
  return Array.isArray(values) ? values.filter((v): v is string => typeof v === 'string') : [];
}

export function processCloudflareSpec(raw: unknown): ProcessedOpenApi {
  return processOpenApi(raw, {
    productOf: cloudflareProductOf,
    keepExtensions: [CLOUDFLARE_PERMISSIONS_EXTENSION],
    permissionsOf: cloudflarePermissionsOf,
  });
}
