import type { Policy, PolicyStore } from '@warden/tools';
import {
  CREDENTIAL_KINDS,
  CREDENTIAL_KIND_DESCRIPTIONS,
  MAX_PATTERN_GLOBSTARS,
  MAX_PATTERN_SEGMENTS,
  explainPolicy,
  parsePolicy,
} from '@warden/tools';
import { validateIdentifier } from '@warden/vault';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { actorOf, tenantAuth, tenantOf } from './auth.ts';
import { errorResponses } from './schemas.ts';

const security = [{ tenantKey: [] }];

const policyRule = z.strictObject({
  effect: z.enum(['allow', 'deny', 'approve']),
  methods: z.array(z.string()).describe('GET, POST, PUT, PATCH, DELETE or "*"'),
  path: z
    .string()
    .describe(
      `Pattern: * or {name} = one segment, ** = any number, e.g. /zones/*/dns_records/**, or r2://bucket/** for R2 objects (execute's r2 calls) in every account, r2://account:<account_id>/bucket/** in one, r2://[account:<account_id>/]jurisdiction:eu/bucket/** in one jurisdiction; at most ${MAX_PATTERN_SEGMENTS} segments and ${MAX_PATTERN_GLOBSTARS} **. Deny and approve rules match fixed names in any case, allow rules exactly; approve holds writes no allow rule matches for a person's approval.`,
    ),
  name: z.string().optional(),
});
const credentialKind = z
  .enum(CREDENTIAL_KINDS)
  .describe(CREDENTIAL_KINDS.map((kind) => `${kind}: ${CREDENTIAL_KIND_DESCRIPTIONS[kind]}`).join('; '));
const credentialOperations = z
  .strictObject({
    allow: z
      .array(credentialKind)
      .optional()
      .describe('Credential operations agents may run (all are refused by default).'),
    reveal_secrets: z
      .array(credentialKind)
      .optional()
      .describe(
        "Kinds whose secrets (token values, keys, and the secrets open answers show, such as an Access identity provider's client secret) agents may see in responses; each must be in allow.",
      ),
  })
  .describe('Tenant-wide policy only.');
export const policySchema = z
  .strictObject({
    read_only: z.boolean().optional().describe('Only GET requests and GraphQL queries.'),
    deny_writes_by_default: z.boolean().optional().describe('Writes need a matching allow rule.'),
    rules: z.array(policyRule).optional(),
    credential_operations: credentialOperations.optional(),
  })
  .meta({ id: 'Policy' });

type PolicyJson = z.infer<typeof policySchema>;
function policyJson(policy: Policy): PolicyJson {
  return structuredClone(policy) as PolicyJson;
}

const identifierParams = z.object({ identifier: z.string().max(256) });

export async function policyRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants'> & { policies: PolicyStore },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.get('/api/v1/policy', {
    schema: {
      tags: ['policy'],
      summary: 'The tenant-wide policy',
      security,
      response: { 200: z.object({ policy: policySchema }), ...errorResponses },
    },
    handler: async (request) => ({
      policy: policyJson(await deps.policies.tenantPolicy(tenantOf(request).tenantId)),
    }),
  });

  r.put('/api/v1/policy', {
    schema: {
      tags: ['policy'],
      summary: 'Replace the tenant-wide policy (applies to every identifier, on every upstream request)',
      security,
      body: policySchema,
      response: { 200: z.object({ policy: policySchema }), ...errorResponses },
    },
    handler: async (request) => {
      const policy = parsePolicy(request.body, '', 'tenant');
      await deps.policies.setTenantPolicy(actorOf(request), policy);
      return { policy: policyJson(policy) };
    },
  });

  r.post('/api/v1/policy/evaluate', {
    schema: {
      tags: ['policy'],
      summary:
        'Would this upstream request be allowed for an identifier now? The decision and the rule that decides',
      description:
        'Evaluates the tenant and identity policies exactly as an execution would (on the canonical path), without sending anything.',
      security,
      body: z.strictObject({
        identifier: z.string().max(256),
        method: z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']),
        path: z
          .string()
          .max(4096)
          .describe(
            'A Cloudflare API path, e.g. /zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records, or an R2 object as r2.<op> calls are matched: r2://bucket/key (r2://bucket for a listing), r2://account:<account_id>/[jurisdiction:<default|eu|fedramp>/]bucket/key for account and jurisdiction rules to apply',
          ),
        graphql_query: z
          .boolean()
          .optional()
          .describe('For POST /graphql: whether the selected operation is a query (a read).'),
      }),
      response: {
        200: z.object({
          allowed: z.boolean(),
          path: z.string().describe('The canonical path the policy was evaluated on'),
          rule: z
            .string()
            .nullable()
            .describe('The deciding rule; null when nothing matched (default allow)'),
          scope: z.enum(['tenant', 'identity']).nullable(),
          reason: z.string(),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const { identifier, method, path, graphql_query } = request.body;
      const { tenant, identity } = await deps.policies.effective(
        tenantOf(request).tenantId,
        validateIdentifier(identifier),
      );
      return explainPolicy(tenant, identity, {
        method,
        path,
        ...(graphql_query !== undefined ? { graphqlQuery: graphql_query } : {}),
      });
    },
  });

  r.get('/api/v1/identities/:identifier/policy', {
    schema: {
      tags: ['policy'],
      summary: "An identifier's own policy (applied in addition to the tenant's)",
      security,
      params: identifierParams,
      response: { 200: z.object({ policy: policySchema }), ...errorResponses },
    },
    handler: async (request) => ({
      policy: policyJson(
        await deps.policies.identityPolicy(
          tenantOf(request).tenantId,
          validateIdentifier(request.params.identifier),
        ),
      ),
    }),
  });

  r.put('/api/v1/identities/:identifier/policy', {
    schema: {
      tags: ['policy'],
      summary: "Replace an identifier's policy",
      security,
      params: identifierParams,
      body: policySchema,
      response: { 200: z.object({ policy: policySchema }), ...errorResponses },
    },
    handler: async (request) => {
      const policy = parsePolicy(request.body, '', 'identity');
      await deps.policies.setIdentityPolicy(
        actorOf(request),
        validateIdentifier(request.params.identifier),
        policy,
      );
      return { policy: policyJson(policy) };
    },
  });

  r.delete('/api/v1/identities/:identifier/policy', {
    schema: {
      tags: ['policy'],
      summary: "Remove an identifier's policy (the tenant's still applies)",
      security,
      params: identifierParams,
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.policies.deleteIdentityPolicy(
        actorOf(request),
        validateIdentifier(request.params.identifier),
      );
      return reply.code(204).send(null);
    },
  });
}
