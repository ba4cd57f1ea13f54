export {
  describePolicy,
  evaluatePolicy,
  isGraphqlPath,
  isGraphqlQueryDocument,
  isWrite,
  parsePolicy,
  pathMatches,
  policyRefusal,
} from './policy.ts';
export type { Policy, PolicyDecision, PolicyMethod, PolicyRequest, PolicyRule } from './policy.ts';
export { createPolicyStore } from './policy.store.ts';
export type { PolicyStore } from './policy.store.ts';
