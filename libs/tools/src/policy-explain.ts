import { canonicalizePath } from './canonical-path.ts';
import { evaluatePolicy, ruleApplies, ruleLabel } from './policy.ts';
import { parseR2PolicyPath } from './r2-gateway.ts';
import type { Policy, PolicyRequest } from './policy.ts';

export interface PolicyExplanation {
  readonly allowed: boolean;
  /** The canonical form of the path, the one policy is evaluated on and Cloudflare would get. */
  readonly path: string;
  /** The rule that decided: a refusing rule, or the allow rule that matched; null for the default. */
  readonly rule: string | null;
  readonly scope: 'tenant' | 'identity' | null;
  readonly reason: string;
}

function firstAllow(policy: Policy, request: PolicyRequest): string | null {
  for (const [i, rule] of (policy.rules ?? []).entries()) {
    if (rule.effect === 'allow' && ruleApplies(rule, request)) return ruleLabel(rule, i);
  }
  return null;
}

/**
 * What `evaluatePolicy` would decide for one request of an identifier, with the rule that decides:
 * the policy tester's answer. The path is canonicalized first, exactly as the upstream gateway does;
 * an R2 object path (`r2://bucket/key`, or `r2://account:<id>/[jurisdiction:<j>/]bucket/key` for
 * account and jurisdiction rules to apply) as the R2 gateway names it.
 */
export function explainPolicy(
  tenant: Policy,
  identity: Policy,
  request: { method: string; path: string; graphqlQuery?: boolean },
): PolicyExplanation {
  const r2 = request.path.startsWith('r2://') ? parseR2PolicyPath(request.path, 'path') : null;
  const path = r2 ? r2.path : canonicalizePath(request.path, 'path');
  const method = request.method.toUpperCase();
  const evaluated: PolicyRequest = {
    method,
    path: r2 ? r2.ruled : path,
    ...(r2?.account ? { r2Account: r2.account } : {}),
    // A name without `jurisdiction:<j>/` is in the default jurisdiction, as the trail names it.
    ...(r2 ? { r2Jurisdiction: r2.jurisdiction ?? 'default' } : {}),
    ...(request.graphqlQuery !== undefined ? { graphqlQuery: request.graphqlQuery } : {}),
  };
  const decision = evaluatePolicy(tenant, identity, evaluated);
  if (!decision.allowed) {
    return { allowed: false, path, rule: decision.rule, scope: decision.scope, reason: decision.reason };
  }
  for (const [scope, policy] of [
    ['tenant', tenant],
    ['identity', identity],
  ] as const) {
    const rule = firstAllow(policy, evaluated);
    if (rule) return { allowed: true, path, rule, scope, reason: `allowed by ${scope} rule ${rule}` };
  }
  return { allowed: true, path, rule: null, scope: null, reason: 'no rule refuses it: allowed by default' };
}
