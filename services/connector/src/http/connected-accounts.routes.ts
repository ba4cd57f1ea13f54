import type { CloudflareCredential } from '@warden/cloudflare';
import { connectedAccountJson } from '@warden/vault';
import type { ConnectedAccount } from '@warden/vault';
import type { BudgetView } from '@warden/ratelimit';
import { upstreamPrincipal } from '@warden/tools';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { actorOf, tenantAuth, tenantOf } from './auth.ts';
import { authorizationInput, connectedAccount, errorResponses, pageSize } from './schemas.ts';

function toCredential(input: z.infer<typeof authorizationInput>): CloudflareCredential {
  return input.type === 'api_token'
    ? { type: 'api_token', apiToken: input.api_token }
    : { type: 'global_api_key', email: input.email, apiKey: input.api_key };
}

function budgetJson(view: BudgetView) {
  return {
    remaining: view.remaining,
    capacity: view.capacity,
    window_seconds: view.windowSeconds,
    next_refill_at: view.nextRefillAt?.toISOString() ?? null,
    blocked_until: view.blockedUntil?.toISOString() ?? null,
    cloudflare_binding: view.cloudflare?.binding ?? false,
    cloudflare: view.cloudflare
      ? { remaining: view.cloudflare.remaining, reset_at: view.cloudflare.resetAt.toISOString() }
      : null,
  };
}

const idParams = z.object({ id: z.string().max(100) });
const security = [{ tenantKey: [] }];

export async function connectedAccountRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'connectedAccounts' | 'rateBudget' | 'settings'>,
): Promise<void> {
  /** The wire form plus the upstream budget left for each account's principal. */
  async function views(tenantId: string, accounts: readonly ConnectedAccount[]) {
    const { budget } = await deps.settings.effective(tenantId);
    return Promise.all(
      accounts.map(async (account) => {
        let rateBudget = null;
        if (account.status !== 'REVOKED') {
          const principal = upstreamPrincipal(account);
          // Account details stay readable while Redis is down; only the budget is then unknown.
          const status = await deps.rateBudget.status(principal, budget).catch(() => null);
          if (status)
            rateBudget = {
              principal,
              ...budgetJson(status.rest),
              graphql: budgetJson(status.graphql),
              r2: budgetJson(status.r2),
            };
        }
        return { ...connectedAccountJson(account), rate_budget: rateBudget };
      }),
    );
  }
  const view = async (tenantId: string, account: ConnectedAccount) => {
    const [one] = await views(tenantId, [account]);
    if (!one) throw new Error('unreachable: one view per account');
    return one;
  };

  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.post('/api/v1/connected_accounts', {
    schema: {
      tags: ['connected accounts'],
      summary: "Vault an end user's Cloudflare credential (verified against Cloudflare first)",
      security,
      body: z.strictObject({
        identifier: z.string().describe('Your id for the end user, e.g. an email or user id.'),
        connection_name: z.string().optional().describe('Defaults to "cloudflare".'),
        authorization: authorizationInput,
      }),
      // 429: Cloudflare rate-limited the credential's user while it was verified (Retry-After).
      response: {
        201: z.object({ connected_account: connectedAccount }),
        ...errorResponses,
        429: errorResponses[400],
      },
    },
    handler: async (request, reply) => {
      const account = await deps.connectedAccounts.create(actorOf(request), {
        identifier: request.body.identifier,
        ...(request.body.connection_name !== undefined
          ? { connectionName: request.body.connection_name }
          : {}),
        credential: toCredential(request.body.authorization),
      });
      return reply.code(201).send({ connected_account: await view(tenantOf(request).tenantId, account) });
    },
  });

  r.get('/api/v1/connected_accounts', {
    schema: {
      tags: ['connected accounts'],
      summary: 'List connected accounts (credentials are never returned)',
      security,
      querystring: z.object({
        identifier: z.string().optional(),
        connection_name: z.string().optional(),
        status: z.enum(['ACTIVE', 'INVALID', 'REVOKED']).optional(),
        page_size: pageSize,
        page_token: z.string().max(500).optional(),
      }),
      response: {
        200: z.object({
          connected_accounts: z.array(connectedAccount),
          next_page_token: z.string().nullable(),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const q = request.query;
      const page = await deps.connectedAccounts.list(tenantOf(request).tenantId, {
        ...(q.identifier !== undefined ? { identifier: q.identifier } : {}),
        ...(q.connection_name !== undefined ? { connectionName: q.connection_name } : {}),
        ...(q.status !== undefined ? { status: q.status } : {}),
        ...(q.page_size !== undefined ? { pageSize: q.page_size } : {}),
        ...(q.page_token !== undefined ? { pageToken: q.page_token } : {}),
      });
      return {
        connected_accounts: await views(tenantOf(request).tenantId, page.items),
        next_page_token: page.nextPageToken,
      };
    },
  });

  r.get('/api/v1/connected_accounts/:id', {
    schema: {
      tags: ['connected accounts'],
      summary: 'Get a connected account',
      security,
      params: idParams,
      response: { 200: z.object({ connected_account: connectedAccount }), ...errorResponses },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      return {
        connected_account: await view(
          tenantId,
          await deps.connectedAccounts.get(tenantId, request.params.id),
        ),
      };
    },
  });

  r.put('/api/v1/connected_accounts/:id', {
    schema: {
      tags: ['connected accounts'],
      summary: 'Rotate the credential (the new one is verified first)',
      security,
      params: idParams,
      body: z.strictObject({ authorization: authorizationInput }),
      // 429: Cloudflare rate-limited the new credential's user while it was verified (Retry-After).
      response: {
        200: z.object({ connected_account: connectedAccount }),
        ...errorResponses,
        429: errorResponses[400],
      },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      const account = await deps.connectedAccounts.rotate(
        actorOf(request),
        request.params.id,
        toCredential(request.body.authorization),
      );
      return { connected_account: await view(tenantId, account) };
    },
  });

  r.put('/api/v1/connected_accounts/:id/r2_access_key', {
    schema: {
      tags: ['connected accounts'],
      summary: 'Vault an R2 access key pair on the account (R2 requests sign with it instead of the token)',
      description:
        "A second kind of credential: an R2 API token's Access Key ID and Secret Access Key (R2 > Manage API tokens). r2.<op> calls in cloudflare_execute sign with it in preference to the S3 credentials derived from the account's API token. Sealed like the account's credential; only its access_key_id is ever shown. Not checked against R2 when stored: a wrong pair fails the first R2 request with forbidden. Replaces a pair already vaulted; revoking the account deletes it.",
      security,
      params: idParams,
      body: z.strictObject({
        access_key_id: z.string().max(128).describe('The R2 Access Key ID (32 characters).'),
        secret_access_key: z
          .string()
          .max(256)
          .describe('The R2 Secret Access Key (64 characters); never shown back.'),
      }),
      response: { 200: z.object({ connected_account: connectedAccount }), ...errorResponses },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      const account = await deps.connectedAccounts.setR2AccessKey(actorOf(request), request.params.id, {
        accessKeyId: request.body.access_key_id,
        secretAccessKey: request.body.secret_access_key,
      });
      return { connected_account: await view(tenantId, account) };
    },
  });

  r.delete('/api/v1/connected_accounts/:id/r2_access_key', {
    schema: {
      tags: ['connected accounts'],
      summary: "Delete the account's R2 access key pair (R2 requests go back to the token's S3 credentials)",
      security,
      params: idParams,
      response: { 200: z.object({ connected_account: connectedAccount }), ...errorResponses },
    },
    handler: async (request) => {
      const { tenantId } = tenantOf(request);
      const account = await deps.connectedAccounts.removeR2AccessKey(actorOf(request), request.params.id);
      return { connected_account: await view(tenantId, account) };
    },
  });

  r.delete('/api/v1/connected_accounts/:id', {
    schema: {
      tags: ['connected accounts'],
      summary:
        'Revoke: destroy the ciphertext and its data key; a REVOKED tombstone stays for the audit trail',
      security,
      params: idParams,
      response: { 204: z.null().describe('Revoked'), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.connectedAccounts.revoke(actorOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  });
}
