/**
 * Permission strings are the keys the OpenAPI document lists in `x-cfPermissionsRequired`:
 * legacy role keys (`#dns_records:edit`) and IAM keys (`com.cloudflare.edge.worker.script.read`).
 * A route names the keys that satisfy it (any one is enough); a granted key also grants
 * the keys it implies, the way Cloudflare's read/write permission groups do.
 */

const LEGACY_SHAPE = /^#[a-z0-9_]+:[a-z_]+$/;
const IAM_SHAPE = /^com\.cloudflare\.[a-z0-9_.-]+$/;
const WRITE_VERBS = new Set(['edit', 'write']);
const MUTATING_VERBS = new Set(['create', 'update', 'delete']);
const ALL_VERBS = ['read', 'list', 'create', 'update', 'delete', 'edit', 'write'] as const;

export function isPermissionShape(permission: string): boolean {
  return LEGACY_SHAPE.test(permission) || IAM_SHAPE.test(permission);
}

/**
 * `#group:edit` implies `#group:read`. For IAM keys: `<resource>.edit|write` implies every
 * verb on that resource, `create|update|delete` imply `read` and `list`, and `read` implies `list`.
 */
export function expandPermissions(granted: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const permission of granted) {
    out.add(permission);
    if (permission.startsWith('#')) {
      if (permission.endsWith(':edit')) out.add(`${permission.slice(0, -':edit'.length)}:read`);
      continue;
    }
    const dot = permission.lastIndexOf('.');
    const resource = permission.slice(0, dot);
    const verb = permission.slice(dot + 1);
    if (WRITE_VERBS.has(verb)) {
      for (const v of ALL_VERBS) out.add(`${resource}.${v}`);
    } else if (MUTATING_VERBS.has(verb)) {
      out.add(`${resource}.read`);
      out.add(`${resource}.list`);
    } else if (verb === 'read') {
      out.add(`${resource}.list`);
    }
  }
  return out;
}

/** True when the expanded grant holds any one of the required keys (an empty requirement always holds). */
export function satisfies(expanded: ReadonlySet<string>, required: readonly string[]): boolean {
  if (required.length === 0) return true;
  for (const permission of required) if (expanded.has(permission)) return true;
  return false;
}

/**
 * Dashboard permission-group names mapped to the document's keys, for building tokens the way a
 * user would pick them in the dashboard. The names are Cloudflare's; the mapping covers the keys
 * the fake's routes check.
 */
export const FAKE_CF_PERMISSION_GROUPS: Readonly<Record<string, readonly string[]>> = {
  'Account Settings Read': ['#organization:read'],
  'Account Settings Write': ['#organization:edit'],
  'Zone Read': ['#zone:read'],
  'Zone Write': ['#zone:edit'],
  'DNS Read': ['#dns_records:read'],
  'DNS Write': ['#dns_records:edit'],
  'Analytics Read': ['#analytics:read'],
  'Account Analytics Read': ['#analytics:read'],
  'User Details Read': ['com.cloudflare.api.user.read'],
  'User Details Write': ['com.cloudflare.api.user.update'],
  'API Tokens Read': ['com.cloudflare.api.token.read', 'com.cloudflare.api.token.list'],
  'API Tokens Write': [
    'com.cloudflare.api.token.create',
    'com.cloudflare.api.token.read',
    'com.cloudflare.api.token.list',
    'com.cloudflare.api.token.update',
    'com.cloudflare.api.token.delete',
  ],
  'Workers Scripts Read': [
    'com.cloudflare.edge.worker.script.read',
    'com.cloudflare.edge.worker.script.list',
  ],
  'Workers Scripts Write': [
    'com.cloudflare.edge.worker.script.create',
    'com.cloudflare.edge.worker.script.read',
    'com.cloudflare.edge.worker.script.list',
    'com.cloudflare.edge.worker.script.edit',
    'com.cloudflare.edge.worker.script.delete',
  ],
  'Workers R2 Storage Read': ['com.cloudflare.edge.r2.bucket.read', 'com.cloudflare.edge.r2.bucket.list'],
  'Workers R2 Storage Write': ['com.cloudflare.edge.r2.bucket.write'],
  'Workers KV Storage Read': [
    'com.cloudflare.edge.storage.kv.namespace.list',
    'com.cloudflare.edge.storage.kv.namespace.read',
    'com.cloudflare.edge.storage.kv.key.list',
    'com.cloudflare.edge.storage.kv.key.read',
  ],
  'Workers KV Storage Write': [
    'com.cloudflare.edge.storage.kv.namespace.list',
    'com.cloudflare.edge.storage.kv.namespace.read',
    'com.cloudflare.edge.storage.kv.namespace.create',
    'com.cloudflare.edge.storage.kv.namespace.delete',
    'com.cloudflare.edge.storage.kv.key.list',
    'com.cloudflare.edge.storage.kv.key.read',
    'com.cloudflare.edge.storage.kv.key.update',
    'com.cloudflare.edge.storage.kv.key.delete',
  ],
};

/** User-level keys: they apply to the token's owner, whatever accounts or zones the policy names. */
export function isUserPermission(permission: string): boolean {
  return (
    permission.startsWith('com.cloudflare.api.user.') || permission.startsWith('com.cloudflare.api.token.')
  );
}
