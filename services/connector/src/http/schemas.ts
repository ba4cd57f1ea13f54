import { z } from 'zod';

/** Shared wire schemas. Field names are snake_case (API.md). */
export const errorResponse = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      field: z.string().optional(),
      request_id: z.string().optional(),
    }),
  })
  .meta({ id: 'Error' });

export const errorResponses = {
  400: errorResponse,
  401: errorResponse,
  404: errorResponse,
  409: errorResponse,
  500: errorResponse,
  502: errorResponse,
  503: errorResponse,
  504: errorResponse,
} as const;

export const authorizationInput = z
  .discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('api_token'),
      api_token: z.string().describe('A Cloudflare API token (user- or account-owned).'),
    }),
    z.strictObject({
      type: z.literal('global_api_key'),
      email: z.string().describe('Email of the Cloudflare user owning the key.'),
      api_key: z.string().describe('The Global API Key.'),
    }),
  ])
  .meta({ id: 'Authorization' });

const budgetView = z
  .object({
    remaining: z
      .number()
      .describe(
        "Requests Warden would send now: its own window's figure, or Cloudflare's when lower; 0 while blocked",
      ),
    capacity: z.number().describe('Requests allowed in any window'),
    window_seconds: z.number(),
    next_refill_at: z
      .string()
      .nullable()
      .describe(
        'When the oldest request in the window leaves it, allowing one more; null for an empty window',
      ),
    blocked_until: z.string().nullable().describe('Set while Cloudflare asked to back off (429 Retry-After)'),
    cloudflare_binding: z
      .boolean()
      .describe(
        "True while Cloudflare's count is the lower figure: its Ratelimit headers reported requests that are not Warden's (the dashboard, other tools use the same quota) or a lower quota",
      ),
    cloudflare: z
      .object({ remaining: z.number(), reset_at: z.string() })
      .nullable()
      .describe(
        "What Cloudflare's count allows (its quota less Warden's requests and the others it reported) while that matters, until reset_at; null when Warden's window alone decides",
      ),
  })
  .meta({ id: 'RateBudget' });
export const connectedAccount = z
  .object({
    id: z.string(),
    identifier: z.string(),
    connection_name: z.string(),
    status: z.enum(['ACTIVE', 'INVALID', 'REVOKED']),
    authorization_type: z.enum(['api_token', 'global_api_key']),
    token_kind: z.enum(['user', 'account']),
    cloudflare: z.object({
      user_id: z.string().nullable(),
      account_ids: z.array(z.string()),
      accounts: z.array(z.object({ id: z.string(), name: z.string() })),
      token_id: z.string().nullable(),
      token_status: z.string(),
      expires_on: z.string().nullable(),
    }),
    r2_access_key: z
      .object({ access_key_id: z.string(), created_at: z.string() })
      .nullable()
      .describe(
        'The R2 access key pair vaulted beside the credential (PUT …/r2_access_key), by its id only; R2 requests sign with it when present',
      ),
    created_at: z.string(),
    updated_at: z.string(),
    last_used_at: z.string().nullable(),
    rate_budget: budgetView
      .extend({
        principal: z
          .string()
          .describe(
            'cf:user:<id> or cf:account:<id>: whom Cloudflare counts these requests against; cf:token:<id> for a user token that may not read its user (User Details Read), whose budget is then its own',
          ),
        graphql: budgetView.describe('GraphQL queries, limited apart from REST'),
        r2: budgetView.describe(
          'R2 object requests (r2.<op> in cloudflare_execute, CLOUDFLARE_R2_BUDGET), limited apart from the API',
        ),
      })
      .nullable()
      .describe(
        'The upstream budget left now (REST fields at the top level); null when revoked or when the budget store is unreachable',
      ),
  })
  .meta({ id: 'ConnectedAccount' });

export const tenant = z
  .object({ id: z.string(), name: z.string(), created_at: z.string() })
  .meta({ id: 'Tenant' });

export const pageSize = z.coerce.number().int().min(1).max(100).optional();
