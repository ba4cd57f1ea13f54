import { WardenError } from '@warden/core';
import { pathSegments } from './canonical-path.ts';
import {
  CREDENTIAL_KINDS,
  credentialKindAllowed,
  credentialOperation,
  credentialSecretsRevealed,
} from './credential-guard.ts';
import type { CredentialKind, CredentialOperation, CredentialOperationsPolicy } from './credential-guard.ts';
import { isGraphqlRequest } from './graphql-operation.ts';
import { compilePattern, matchPattern, pathSubject, patternProblem } from './policy-matcher.ts';
import type { LiteralMatch, PathSubject } from './policy-matcher.ts';

/**
 * Access policy for upstream requests, set per tenant and per identifier. Both apply:
 * the effective decision is the most restrictive of the two. Requests are evaluated on
 * their canonical path (`canonicalizePath`), the one that is then sent.
 *
 *   1. a credential operation (`credential-guard.ts`) is refused unless the tenant
 *      policy's `credential_operations.allow` names its kind;
 *   2. a matching `deny` rule refuses (tenant rules first, then the identifier's);
 *   3. `read_only` refuses anything but GET and GraphQL queries;
 *   4. `deny_writes_by_default` refuses writes that no `allow` rule matches;
 *   5. otherwise the request is allowed — but a write that an `approve` rule matches and no
 *      `allow` rule matches is held for a person's approval (`approval` on the decision).
 *      Reads are never held. E.g. "approve every write except DNS edits on staging":
 *      approve `* /**` plus allow `* /zones/{staging}/dns_records/**`.
 *
 * Deny and approve rules compare literal segments ignoring ASCII case, allow rules exactly: a
 * case variant never escapes a deny or an approval and never gains an allow.
 */
export type PolicyMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface PolicyRule {
  readonly effect: 'allow' | 'deny' | 'approve';
  /** Methods the rule covers; `['*']` for all. */
  readonly methods: readonly (PolicyMethod | '*')[];
  /**
   * Path pattern over the API path: `*` or `{name}` matches one segment, `**` any number
   * of segments (including none). E.g. `/zones/*\/dns_records/**`. Bounded at PUT
   * (`patternProblem`). R2 object calls are matched as `r2://bucket/key` (`r2://bucket` for a
   * listing), so `r2://backups/**` names a bucket's objects; `/**` covers them too. R2 keys and
   * the key literals of `r2://` rules are compared in Unicode NFC (`r2-key.ts`). Such a rule
   * covers that bucket name in every Cloudflare account; `r2://account:<account_id>/backups/**`
   * covers it in one account only (matched against the request's `r2Account`), and either form
   * every jurisdiction; `r2://[account:<account_id>/]jurisdiction:eu/backups/**` (or `fedramp`,
   * `default`) covers it in one jurisdiction (matched against the request's `r2Jurisdiction`).
   */
  readonly path: string;
  /** Shown in refusals so users know which rule refused. */
  readonly name?: string;
}

export interface Policy {
  readonly read_only?: boolean;
  readonly deny_writes_by_default?: boolean;
  readonly rules?: readonly PolicyRule[];
  /** Tenant-wide policy only: which credential operations agents may run, and see the secrets of. */
  readonly credential_operations?: CredentialOperationsPolicy;
}

export interface PolicyRequest {
  readonly method: string;
  /** The canonical path (`canonicalizePath`). */
  readonly path: string;
  /** For the GraphQL endpoint: whether `classifyGraphqlRequest` found a read (a query). */
  readonly graphqlQuery?: boolean;
  /** The credential operation the request is, when the caller worked it out already. */
  readonly credential?: CredentialOperation | null;
  /**
   * For an R2 object (`r2://bucket/key`): the Cloudflare account it is in, lower case, which
   * `r2://account:<id>/…` rules match; without it they match nothing.
   */
  readonly r2Account?: string;
  /**
   * For an R2 object: the jurisdiction of the call (`default`, `eu`, `fedramp`), which
   * `r2://[account:<id>/]jurisdiction:<j>/…` rules match; without it they match nothing.
   */
  readonly r2Jurisdiction?: string;
}

/** The prefix of rules on one account's R2 objects: `r2://account:<account_id>/bucket/key`. */
export const R2_ACCOUNT_RULE = 'r2://account:';

/** R2's jurisdictions, as `r2.*` calls select them and `jurisdiction:<j>` segments name them. */
export const R2_JURISDICTIONS = ['default', 'eu', 'fedramp'] as const;

const R2_JURISDICTION_RULE = /^r2:\/\/(account:[^/]*\/)?jurisdiction:/;

/**
 * The subjects rules are matched against: the path, and for R2 the path qualified with the
 * account, the jurisdiction, or both (in that order), each when the request has it.
 */
interface Subjects {
  readonly path: PathSubject;
  readonly account: PathSubject | null;
  readonly jurisdiction: PathSubject | null;
  readonly accountJurisdiction: PathSubject | null;
}

function subjects(request: PolicyRequest): Subjects {
  const segments = pathSegments(request.path);
  const r2 = segments[0] === 'r2:';
  const account = r2 && request.r2Account !== undefined ? `account:${request.r2Account}` : null;
  const jurisdiction =
    r2 && request.r2Jurisdiction !== undefined ? `jurisdiction:${request.r2Jurisdiction}` : null;
  const qualified = (...qualifiers: string[]) => pathSubject(['r2:', ...qualifiers, ...segments.slice(1)]);
  return {
    path: pathSubject(segments),
    account: account ? qualified(account) : null,
    jurisdiction: jurisdiction ? qualified(jurisdiction) : null,
    accountJurisdiction: account && jurisdiction ? qualified(account, jurisdiction) : null,
  };
}

/** Which subject a rule is matched against: the qualifiers its pattern begins with. */
function subjectOf(rule: PolicyRule, on: Subjects): PathSubject | null {
  const account = rule.path.startsWith(R2_ACCOUNT_RULE);
  if (R2_JURISDICTION_RULE.test(rule.path)) return account ? on.accountJurisdiction : on.jurisdiction;
  return account ? on.account : on.path;
}

/** Which rule holds a write for approval. */
export interface ApprovalRequirement {
  readonly rule: string;
  readonly scope: 'tenant' | 'identity';
}

export type PolicyDecision =
  | { readonly allowed: true; readonly approval?: ApprovalRequirement }
  | {
      readonly allowed: false;
      readonly rule: string;
      readonly scope: 'tenant' | 'identity';
      readonly reason: string;
    };

const METHODS: readonly PolicyMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
export const MAX_RULES = 200;

/** Whether a path pattern matches a canonical path; allow rules compare `exact`, deny rules `fold-case`. */
export function pathMatches(pattern: string, path: string, literals: LiteralMatch = 'exact'): boolean {
  return matchPattern(compilePattern(pattern), pathSubject(pathSegments(path)), literals);
}

/** Whether a rule matches a request, by method and path (an account rule by its account too). */
export function ruleApplies(rule: PolicyRule, request: PolicyRequest): boolean {
  return ruleMatches(rule, request, subjects(request));
}

export function isWrite(request: PolicyRequest): boolean {
  const method = request.method.toUpperCase();
  // GraphQL is a read only when its operation is known to be a query, whichever method carries it.
  if (isGraphqlRequest(request)) return request.graphqlQuery !== true;
  return method !== 'GET';
}

export function ruleLabel(rule: PolicyRule, index: number): string {
  return rule.name ?? `rules[${index}] (${rule.effect} ${rule.methods.join(',')} ${rule.path})`;
}

function ruleMatches(rule: PolicyRule, request: PolicyRequest, on: Subjects): boolean {
  const method = request.method.toUpperCase();
  // An account rule is matched against the account-qualified path only, a jurisdiction rule
  // against the jurisdiction-qualified one, every other rule against the path: no form can stand
  // for another.
  const path = subjectOf(rule, on);
  return (
    path !== null &&
    (rule.methods.includes('*') || rule.methods.includes(method as PolicyMethod)) &&
    matchPattern(compilePattern(rule.path), path, rule.effect === 'allow' ? 'exact' : 'fold-case')
  );
}

function evaluateOne(
  policy: Policy,
  scope: 'tenant' | 'identity',
  request: PolicyRequest,
  path: Subjects,
  allowedByAny: boolean,
): PolicyDecision {
  const rules = policy.rules ?? [];
  for (const [i, rule] of rules.entries()) {
    if (rule.effect === 'deny' && ruleMatches(rule, request, path)) {
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
  const credential = request.credential !== undefined ? request.credential : credentialOperation(request);
  if (credential?.guarded && !credentialKindAllowed(tenant.credential_operations, credential.kind)) {
    return {
      allowed: false,
      rule: 'credential_operations',
      scope: 'tenant',
      reason: `it mints or manages credentials (${credential.kind}), which the tenant policy does not allow; a tenant admin can add "${credential.kind}" to credential_operations.allow (PUT /api/v1/policy)`,
    };
  }
  const path = subjects(request);
  const allowedByAny = [...(tenant.rules ?? []), ...(identity.rules ?? [])].some(
    (rule) => rule.effect === 'allow' && ruleMatches(rule, request, path),
  );
  const t = evaluateOne(tenant, 'tenant', request, path, allowedByAny);
  if (!t.allowed) return t;
  const i = evaluateOne(identity, 'identity', request, path, allowedByAny);
  if (!i.allowed || allowedByAny || !isWrite(request)) return i;
  for (const [scope, policy] of [
    ['tenant', tenant],
    ['identity', identity],
  ] as const) {
    for (const [index, rule] of (policy.rules ?? []).entries()) {
      if (rule.effect === 'approve' && ruleMatches(rule, request, path)) {
        return { allowed: true, approval: { rule: ruleLabel(rule, index), scope } };
      }
    }
  }
  return i;
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
  const approves = [...(tenant.rules ?? []), ...(identity.rules ?? [])].filter((r) => r.effect === 'approve');
  if (approves.length > 0)
    parts.push(
      `writes held for a person's approval (they resolve {status: 202, pending_approval: true}, are sent only once approved; the result names the approval): ${approves.map((r) => `${r.methods.join('|')} ${r.path}`).join('; ')}`,
    );
  if (denies.length > 0)
    parts.push(`denied: ${denies.map((r) => `${r.methods.join('|')} ${r.path}`).join('; ')}`);
  const credentials = tenant.credential_operations;
  if (credentials?.allow?.length) {
    const kinds = credentials.allow.map((kind) =>
      credentialSecretsRevealed(credentials, kind) ? kind : `${kind} (secrets withheld)`,
    );
    parts.push(`credential operations allowed: ${kinds.join(', ')}`);
  }
  return parts.length > 0 ? `Policy for this identity: ${parts.join('; ')}.` : null;
}

function fieldError(field: string, message: string): WardenError {
  return new WardenError('invalid_request', `${field}: ${message}`, { field });
}

function parseCredentialOperations(input: unknown, field: string): CredentialOperationsPolicy {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw fieldError(field, 'must be an object {allow?, reveal_secrets?}');
  }
  const raw = input as Record<string, unknown>;
  const kinds = (key: 'allow' | 'reveal_secrets'): CredentialKind[] => {
    const value = raw[key];
    if (value === undefined) return [];
    if (!Array.isArray(value))
      throw fieldError(`${field}.${key}`, `must be an array of ${CREDENTIAL_KINDS.join(', ')}`);
    for (const kind of value) {
      if (!CREDENTIAL_KINDS.includes(kind as CredentialKind)) {
        throw fieldError(
          `${field}.${key}`,
          `"${String(kind).slice(0, 50)}" is not one of ${CREDENTIAL_KINDS.join(', ')}`,
        );
      }
    }
    return [...new Set(value as CredentialKind[])];
  };
  for (const key of Object.keys(raw)) {
    if (key !== 'allow' && key !== 'reveal_secrets') {
      throw fieldError(`${field}.${key}`, 'is not a field; use allow or reveal_secrets');
    }
  }
  const allow = kinds('allow');
  const reveal = kinds('reveal_secrets');
  const unallowed = reveal.find((kind) => !allow.includes(kind));
  if (unallowed) {
    throw fieldError(`${field}.reveal_secrets`, `"${unallowed}" must also be in ${field}.allow`);
  }
  return {
    ...(allow.length > 0 ? { allow } : {}),
    ...(reveal.length > 0 ? { reveal_secrets: reveal } : {}),
  };
}

/**
 * Validates a policy document from the API; errors name the field. Only the tenant-wide
 * policy may allow credential operations.
 */
export function parsePolicy(
  input: unknown,
  field = 'policy',
  scope: 'tenant' | 'identity' = 'identity',
): Policy {
  const at = (key: string) => (field ? `${field}.${key}` : key);
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw fieldError(field || 'body', 'must be an object');
  }
  const raw = input as Record<string, unknown>;
  const fields = ['read_only', 'deny_writes_by_default', 'rules', 'credential_operations'];
  for (const key of Object.keys(raw)) {
    if (!fields.includes(key)) {
      throw fieldError(
        at(key),
        'is not a policy field; use read_only, deny_writes_by_default, rules or credential_operations',
      );
    }
  }
  if (raw.credential_operations !== undefined && scope !== 'tenant') {
    throw fieldError(
      at('credential_operations'),
      'only the tenant-wide policy (PUT /api/v1/policy) can allow credential operations; narrow them here with deny rules',
    );
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
      if (rule.effect !== 'allow' && rule.effect !== 'deny' && rule.effect !== 'approve')
        throw fieldError(`${f}.effect`, 'must be "allow", "deny" or "approve"');
      if (!Array.isArray(rule.methods) || rule.methods.length === 0) {
        throw fieldError(`${f}.methods`, 'must be a non-empty array of GET, POST, PUT, PATCH, DELETE or "*"');
      }
      const methods = rule.methods.map((m) => (typeof m === 'string' ? m.toUpperCase() : m));
      for (const m of methods) {
        if (m !== '*' && !METHODS.includes(m as PolicyMethod)) {
          throw fieldError(`${f}.methods`, `"${String(m)}" is not one of GET, POST, PUT, PATCH, DELETE, *`);
        }
      }
      if (
        typeof rule.path !== 'string' ||
        !(rule.path.startsWith('/') || rule.path.startsWith('r2://')) ||
        rule.path.length > 500
      ) {
        throw fieldError(
          `${f}.path`,
          'must be a path pattern starting with "/", e.g. /zones/*/dns_records/**, or an R2 object pattern such as r2://bucket/**',
        );
      }
      const problem = patternProblem(rule.path);
      if (problem) throw fieldError(`${f}.path`, problem);
      // The qualifiers are recognised in lower case only; in any other case they would be read as
      // a bucket name (which never holds a colon), and the rule would match nothing. Refused.
      if (/^r2:\/\/account:/i.test(rule.path) && !/^r2:\/\/account:[0-9a-f]{32}(\/|$)/.test(rule.path)) {
        throw fieldError(
          `${f}.path`,
          'an R2 rule on one account is r2://account:<account_id>/bucket/key, written in lower case with the 32 lower-case hex characters of a Cloudflare account id, e.g. r2://account:023e105f4ecef8ad9ca31a8372d0c353/backups/**',
        );
      }
      if (
        /^r2:\/\/(account:[^/]*\/)?jurisdiction:/i.test(rule.path) &&
        !/^r2:\/\/(account:[0-9a-f]{32}\/)?jurisdiction:(default|eu|fedramp)(\/|$)/.test(rule.path)
      ) {
        throw fieldError(
          `${f}.path`,
          'an R2 rule on one jurisdiction is r2://[account:<account_id>/]jurisdiction:<default|eu|fedramp>/bucket/key, written in lower case, e.g. r2://jurisdiction:eu/backups/**',
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
    ...(raw.credential_operations !== undefined
      ? {
          credential_operations: parseCredentialOperations(
            raw.credential_operations,
            at('credential_operations'),
          ),
        }
      : {}),
  };
}
