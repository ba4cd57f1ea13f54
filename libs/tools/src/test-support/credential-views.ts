import { canonicalizePath } from '../canonical-path.ts';
import { credentialOperation, withholdCredentialSecrets } from '../credential-guard.ts';
import { evaluatePolicy } from '../policy.ts';
import type { Policy } from '../policy.ts';

/** The policy's decision on a request as an agent spells it (canonicalized first). */
export function decide(method: string, path: string, tenant: Policy = {}, identity: Policy = {}) {
  return evaluatePolicy(tenant, identity, { method, path: canonicalizePath(path) });
}

/**
 * What the agent gets for an answer under the default tenant policy: null if the catalog refuses
 * the operation, else the answer with the catalog's fields withheld.
 */
export function shownToAgent(method: string, path: string, answer: { success: boolean; result?: unknown }) {
  const canonical = canonicalizePath(path);
  if (!decide(method, canonical).allowed) return null;
  const operation = credentialOperation({ method, path: canonical });
  return operation ? withholdCredentialSecrets(answer, operation).response : answer;
}

/** Whether what the agent was shown holds `secret`. */
export const leaksTo = (secret: string) => (shown: unknown) =>
  shown !== null && JSON.stringify(shown).includes(secret);
