import type { ApprovalService, ApprovalView } from '@warden/tools';
import { approvalJson } from '@warden/tools';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { tenantAuth } from './auth.ts';
import { errorResponse, errorResponses, pageSize } from './schemas.ts';
import { apiKeyCaller, approvalUrl } from './tools.routes.ts';

const security = [{ tenantKey: [] }];
const STATUSES = ['pending', 'approved', 'rejected', 'expired', 'applied', 'failed'] as const;

const planStepSchema = z.object({
  seq: z.number(),
  method: z.string(),
  path: z.string(),
  query: z.record(z.string(), z.unknown()).nullable(),
  body: z.unknown(),
  body_encoding: z
    .enum(['json', 'text'])
    .nullable()
    .describe(
      '`json`: `body` is the JSON value sent (it may be a string); `text`: `body` is the raw text sent as is (with `content_type`); null: no body.',
    ),
  content_type: z.string().optional(),
  operation: z.object({ path_template: z.string(), permissions: z.array(z.string()) }).nullable(),
  rule: z.string().describe('The policy rule that held the write.'),
});

const resultSchema = z.object({
  seq: z.number(),
  status: z.number().nullable(),
  success: z.boolean(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  result: z.unknown().optional(),
});

const approvalSchema = z
  .object({
    id: z.string(),
    status: z.enum(STATUSES),
    url: z.string().optional(),
    identifier: z.string(),
    connected_account_id: z.string(),
    execution_id: z.string().describe('The execution that planned the writes.'),
    plan: z
      .array(planStepSchema)
      .describe('The writes held, in order (an apply in steps: those the latest run of the code made).'),
    plan_sha256: z.string().describe('SHA-256 of the plan, also on the audit trail.'),
    dependent: z
      .boolean()
      .describe(
        'A later write uses a value only an earlier one would produce: it cannot be applied as recorded, only in steps (`apply_in_steps`).',
      ),
    apply_in_steps: z
      .boolean()
      .describe(
        'A dependent plan whose agent code the tenant keeps: each approval sends one step, then the code runs again with the real results and its next write(s) wait for approval as the next step.',
      ),
    steps: z
      .array(
        z.object({
          step: z.number(),
          status: z
            .enum(STATUSES)
            .describe('`applied` for every step before the last; the last is where the approval stands.'),
          execution_id: z
            .string()
            .nullable()
            .describe("The run that planned it: the agent's execution, then each re-run of its code."),
          plan_sha256: z.string().nullable().describe("SHA-256 of that run's whole plan."),
          sends: z.array(planStepSchema).describe('What approving this step sends.'),
          sends_sha256: z.string().nullable(),
          requested_at: z.string(),
          decided_by: z.object({ type: z.string(), id: z.string().nullable() }).nullable(),
          decided_at: z.string().nullable(),
          comment: z.string().nullable(),
          results: z.array(resultSchema).nullable(),
          error: z
            .object({ code: z.string(), message: z.string() })
            .nullable()
            .describe(
              'Why the apply in steps stopped here (the re-run of the code failed or wrote something else).',
            ),
        }),
      )
      .nullable()
      .describe('The steps of an apply in steps, oldest first; null for a plan applied at once.'),
    requested_by: z.object({ type: z.string(), id: z.string().nullable() }),
    created_at: z.string(),
    expires_at: z.string(),
    decided_by: z.object({ type: z.string(), id: z.string().nullable() }).nullable(),
    decided_at: z.string().nullable(),
    comment: z.string().nullable(),
    results: z
      .array(resultSchema)
      .nullable()
      .describe(
        'Per applied write (of every step so far): what Cloudflare answered; the apply stops at the first failure.',
      ),
  })
  .meta({ id: 'Approval' });

const decision = z.strictObject({
  comment: z.string().max(2_000).optional().describe('Why, for the audit trail.'),
  step: z
    .number()
    .int()
    .min(1)
    .optional()
    .describe(
      'The step this decision is about (`steps[-1].step` of the approval as you read it). Required from step 2 of a plan applied in steps: a decision made on an earlier step never decides a later one nobody saw (409).',
    ),
});

export async function approvalRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'config'> & { approvals: ApprovalService },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));
  const json = (view: ApprovalView) =>
    approvalJson(view, { url: approvalUrl(deps.config.publicUrl, view.id) }) as z.infer<
      typeof approvalSchema
    >;

  r.get('/api/v1/approvals', {
    schema: {
      tags: ['approvals'],
      summary: 'Plans of writes held for approval, newest first',
      security,
      querystring: z.object({
        status: z.enum(STATUSES).optional(),
        identifier: z.string().max(256).optional(),
        page_size: pageSize,
        page_token: z.string().max(500).optional(),
      }),
      response: {
        200: z.object({ approvals: z.array(approvalSchema), next_page_token: z.string().nullable() }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const q = request.query;
      const page = await deps.approvals.list(apiKeyCaller(request).tenantId, {
        ...(q.status ? { status: q.status } : {}),
        ...(q.identifier ? { identifier: q.identifier } : {}),
        ...(q.page_size !== undefined ? { pageSize: q.page_size } : {}),
        ...(q.page_token ? { pageToken: q.page_token } : {}),
      });
      return { approvals: page.approvals.map(json), next_page_token: page.nextPageToken };
    },
  });

  r.get('/api/v1/approvals/:id', {
    schema: {
      tags: ['approvals'],
      summary: 'One approval: its plan, decision and per-step results',
      security,
      params: z.object({ id: z.string().max(100) }),
      response: { 200: z.object({ approval: approvalSchema }), ...errorResponses },
    },
    handler: async (request) => ({
      approval: json(await deps.approvals.get(apiKeyCaller(request).tenantId, request.params.id)),
    }),
  });

  const decisions = {
    approve: {
      summary:
        'Approve a pending plan (or its current step): Warden sends exactly its writes, in order, and reports each',
      description:
        "The writes go out with the identity's credential and policy as they stand now (a deny rule added since refuses), through the rate budget and the write-ahead audit; the apply stops at the first failure. A plan applied in steps (`apply_in_steps`) sends its current step's writes, then runs the agent's code again with their real results: its next writes make the next step, pending again; none make it `applied`; a re-run that writes anything else than what was applied makes it `failed`. Decided once: a second decision answers 409. Separation of duties: the API key that planned the writes cannot approve them, nor can the person they were planned for when signed in to the console through SSO (403 self_approval); another person must.",
    },
    reject: {
      summary: 'Reject a pending plan: nothing of it is ever sent',
      description:
        'Decided by another principal than the one that planned the writes (403 self_approval otherwise).',
    },
  } as const;
  for (const verb of ['approve', 'reject'] as const) {
    r.post(`/api/v1/approvals/:id/${verb}`, {
      schema: {
        tags: ['approvals'],
        summary: decisions[verb].summary,
        description: decisions[verb].description,
        security,
        params: z.object({ id: z.string().max(100) }),
        body: decision.optional(),
        response: {
          200: z.object({ approval: approvalSchema }),
          // self_approval: the key that planned the writes cannot decide them.
          403: errorResponse,
          ...errorResponses,
        },
      },
      handler: async (request) => ({
        approval: json(
          await deps.approvals[verb]({ caller: apiKeyCaller(request) }, request.params.id, {
            comment: request.body?.comment,
            ...(request.body?.step !== undefined ? { step: request.body.step } : {}),
          }),
        ),
      }),
    });
  }
}
