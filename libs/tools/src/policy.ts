import { WardenError } from '@warden/core';

/**
 * Access policy for upstream requests, set per tenant and per identifier. Both apply:
 * the effective decision is the most restrictive of the two.
 *
 *   1. a matching `deny` rule refuses (tenant rules first, then the identifier's);
 *   2. `read_only` refuses anything but GET and GraphQL queries;
 *   3. `deny_writes_by_default` refuses writes that no `allow` rule matches;
 *   4. otherwise the request is allowed.
 */
export type PolicyMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface PolicyRule {
  readonly effect: 'allow' | 'deny';
  /** Methods the rule covers; `['*']` for all. */
  readonly methods: readonly (PolicyMethod | '*')[];
  /**
   * Path pattern over the API path: `*` or `{name}` matches one segment, `**` any number
   * of segments (including none). E.g. `/zones/*\/dns_records/**`.
   */
  readonly path: string;
  /** Shown in refusals so users know which rule refused. */
  readonly name?: string;
}

export interface Policy {
  readonly read_only?: boolean;
  readonly deny_writes_by_default?: boolean;
  readonly rules?: readonly PolicyRule[];
}

export interface PolicyRequest {
  readonly method: string;
  readonly path: string;
  /** For POST /graphql: whether the document is a query (reads) rather than a mutation. */
  readonly graphqlQuery?: boolean;
}

export type PolicyDecision =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly rule: string;
      readonly scope: 'tenant' | 'identity';
      readonly reason: string;
    };

const METHODS: readonly PolicyMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
const MAX_RULES = 200;

function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/** Matches pattern segments against path segments; `**` backtracks over any run. */
function matchSegments(pattern: readonly string[], path: readonly string[], pi = 0, si = 0): boolean {
  if (pi === pattern.length) return si === path.length;
  const p = pattern[pi] as string;
  if (p === '**') {
    for (let k = si; k <= path.length; k++) if (matchSegments(pattern, path, pi + 1, k)) return true;
    return false;
  }
  if (si === path.length) return false;
  if (p === '*' || (p.startsWith('{') && p.endsWith('}')) || p === path[si]) {
    return matchSegments(pattern, path, pi + 1, si + 1);
  }
  return false;
}

export function pathMatches(pattern: string, path: string): boolean {
  return matchSegments(segments(pattern), segments(path.split('?')[0] ?? ''));
}

export function isGraphqlPath(path: string): boolean {
  return segments(path).join('/') === 'graphql';
}

/** A GraphQL document is a read unless it contains a mutation or subscription operation. */
export function isGraphqlQueryDocument(body: unknown): boolean {
  const query = typeof body === 'object' && body !== null ? (body as { query?: unknown }).query : undefined;
  if (typeof query !== 'string') return false;
  const withoutComments = query.replace(/#[^\n]*/g, '').replace(/"(?:[^"\\]|\\.)*"/g, '""');
  return !/(^|[\s{}])(mutation|subscription)\b/.test(withoutComments);
}

export function isWrite(request: PolicyRequest): boolean {
  const method = request.method.toUpperCase();
  if (method === 'GET') return false;
  if (method === 'POST' && isGraphqlPath(request.path) && request.graphqlQuery === true) return false;
  return true;
}

function ruleLabel(rule: PolicyRule, index: number): string {
  return rule.name ?? `rules[${index}] (${rule.effect} ${rule.methods.join(',')} ${rule.path})`;
}

function ruleMatches(rule: PolicyRule, request: PolicyRequest): boolean {
  const method = request.method.toUpperCase();
  return (
    (rule.methods.includes('*') || rule.methods.includes(method as PolicyMethod)) &&
    pathMatches(rule.path, request.path)
  );
}

function evaluateOne(
  policy: Policy,
  scope: 'tenant' | 'identity',
  request: PolicyRequest,
  allowedByAny: boolean,
): PolicyDecision {
  const rules = policy.rules ?? [];
  for (const [i, rule] of rules.entries()) {
    if (rule.effect === 'deny' && ruleMatches(rule, request)) {
      return {
        allowed: false,
        rule: ruleLabel(rule, i),
        scope,
        reason: `denied by ${scope} rule ${ruleLabel(rule, i)}`,
      };
    }
  }
  const write = isWrite(request);
  if (policy.read_only && write) {
    return {
      allowed: false,
      rule: 'read_only',
      scope,
      reason: `the ${scope} policy is read_only: only GET requests and GraphQL queries are allowed`,
    };
  }
  if (policy.deny_writes_by_default && write && !allowedByAny) {
    return {
      allowed: false,
      rule: 'deny_writes_by_default',
      scope,
      reason: `the ${scope} policy denies writes by default and no allow rule matches ${request.method.toUpperCase()} ${request.path}`,
    };
  }
  return { allowed: true };
}

export function evaluatePolicy(tenant: Policy, identity: Policy, request: PolicyRequest): PolicyDecision {
  const allowedByAny = [...(tenant.rules ?? []), ...(identity.rules ?? [])].some(
    (rule) => rule.effect === 'allow' && ruleMatches(rule, request),
  );
  const t = evaluateOne(tenant, 'tenant', request, allowedByAny);
  if (!t.allowed) return t;
  return evaluateOne(identity, 'identity', request, allowedByAny);
}

export function policyRefusal(
  decision: Exclude<PolicyDecision, { allowed: true }>,
  request: PolicyRequest,
): WardenError {
  return new WardenError(
    'policy_denied',
    `${request.method.toUpperCase()} ${request.path} refused: ${decision.reason}`,
    {
      rule: decision.rule,
      scope: decision.scope,
    },
  );
}

/** One line per policy for tool descriptions, so agents know the limits before they try. */
export function describePolicy(tenant: Policy, identity: Policy): string | null {
  const parts: string[] = [];
  if (tenant.read_only || identity.read_only) parts.push('read-only (GET requests and GraphQL queries only)');
  else if (tenant.deny_writes_by_default || identity.deny_writes_by_default) {
    const allows = [...(tenant.rules ?? []), ...(identity.rules ?? [])].filter((r) => r.effect === 'allow');
    parts.push(
      allows.length > 0
        ? `writes only to: ${allows.map((r) => `${r.methods.join('|')} ${r.path}`).join('; ')}`
        : 'no writes allowed',
    );
  }
  const denies = [...(tenant.rules ?? []), ...(identity.rules ?? [])].filter((r) => r.effect === 'deny');
  if (denies.length > 0)
    parts.push(`denied: ${denies.map((r) => `${r.methods.join('|')} ${r.path}`).join('; ')}`);
  return parts.length > 0 ? `Policy for this identity: ${parts.join('; ')}.` : null;
}

function fieldError(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `${field}: ${message}`, { field });
}

/** Validates a policy document from the API; errors name the field. */
export function parsePolicy(input: unknown, field = 'policy'): Policy {
  const at = (key: string) => (field ? `${field}.${key}` : key);
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw fieldError(field || 'body', 'must be an object');
  }
  const raw = input as Record<string, unknown>;
  for (const key of Object.keys(raw)) {
    if (!['read_only', 'deny_writes_by_default', 'rules'].includes(key)) {
      throw fieldError(at(key), 'is not a policy field; use read_only, deny_writes_by_default or rules');
    }
  }
  for (const flag of ['read_only', 'deny_writes_by_default'] as const) {
    if (raw[flag] !== undefined && typeof raw[flag] !== 'boolean')
      throw fieldError(at(flag), 'must be true or false');
  }
  const rules: PolicyRule[] = [];
  if (raw.rules !== undefined) {
    if (!Array.isArray(raw.rules)) throw fieldError(at('rules'), 'must be an array of rules');
    if (raw.rules.length > MAX_RULES) throw fieldError(at('rules'), `at most ${MAX_RULES} rules`);
    for (const [i, r] of raw.rules.entries()) {
      const f = at(`rules[${i}]`);
      if (typeof r !== 'object' || r === null)
        throw fieldError(f, 'must be an object {effect, methods, path, name?}');
      const rule = r as Record<string, unknown>;
      if (rule.effect !== 'allow' && rule.effect !== 'deny')
        throw fieldError(`${f}.effect`, 'must be "allow" or "deny"');
      if (!Array.isArray(rule.methods) || rule.methods.length === 0) {
        throw fieldError(`${f}.methods`, 'must be a non-empty array of GET, POST, PUT, PATCH, DELETE or "*"');
      }
      const methods = rule.methods.map((m) => (typeof m === 'string' ? m.toUpperCase() : m));
      for (const m of methods) {
        if (m !== '*' && !METHODS.includes(m as PolicyMethod)) {
          throw fieldError(`${f}.methods`, `"${String(m)}" is not one of GET, POST, PUT, PATCH, DELETE, *`);
        }
      }
      if (typeof rule.path !== 'string' || !rule.path.startsWith('/') || rule.path.length > 500) {
        throw fieldError(
          `${f}.path`,
          'must be a path pattern starting with "/", e.g. /zones/*/dns_records/**',
        );
      }
      if (rule.name !== undefined && (typeof rule.name !== 'string' || rule.name.length > 100)) {
        throw fieldError(`${f}.name`, 'must be a string of at most 100 characters');
      }
      rules.push({
        effect: rule.effect,
        methods: methods as PolicyRule['methods'],
        path: rule.path,
        ...(typeof rule.name === 'string' ? { name: rule.name } : {}),
      });
    }
  }
  return {
    ...(raw.read_only !== undefined ? { read_only: raw.read_only as boolean } : {}),
    ...(raw.deny_writes_by_default !== undefined
      ? { deny_writes_by_default: raw.deny_writes_by_default as boolean }
      : {}),
    ...(rules.length > 0 ? { rules } : {}),
  };
}
