import type { McpTokenListing, McpTokenService } from '@warden/vault';
import { parseExpiry, validateIdentifier } from '@warden/vault';
import { WardenError } from '@warden/core';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Container } from '../container.ts';
import { actorOf, principalRef, tenantAuth, tenantOf } from './auth.ts';
import { errorResponses, pageSize } from './schemas.ts';

const security = [{ tenantKey: [] }];

const mcpTokenSchema = z
  .object({
    id: z.string(),
    identifier: z.string(),
    connection_names: z
      .array(z.string())
      .nullable()
      .describe('Connections the token may use; null = all of the identifier’s.'),
    status: z.enum(['active', 'expired', 'revoked']),
    created_at: z.string(),
    expires_at: z.string(),
    revoked_at: z.string().nullable(),
    last_used_at: z.string().nullable().describe('Updated at most once a minute.'),
    client: z
      .object({ name: z.string(), version: z.string().nullable() })
      .nullable()
      .describe('clientInfo of the last MCP initialize made with the token.'),
  })
  .meta({ id: 'McpToken' });

function tokenJson(t: McpTokenListing, now: Date) {
  return {
    id: t.id,
    identifier: t.identifier,
    connection_names: t.connectionNames ? [...t.connectionNames] : null,
    status: t.revokedAt
      ? ('revoked' as const)
      : t.expiresAt <= now
        ? ('expired' as const)
        : ('active' as const),
    created_at: t.createdAt.toISOString(),
    expires_at: t.expiresAt.toISOString(),
    revoked_at: t.revokedAt?.toISOString() ?? null,
    last_used_at: t.lastUsedAt?.toISOString() ?? null,
    client: t.clientName ? { name: t.clientName, version: t.clientVersion } : null,
  };
}

export async function mcpTokenRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'db' | 'config'> & { mcpTokens: McpTokenService },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));
  const mcpUrl = `${deps.config.publicUrl}/mcp`;

  r.post('/api/v1/mcp/tokens', {
    schema: {
      tags: ['mcp'],
      summary: 'Mint a per-user MCP session token (shown once) and a ready ~/.cursor/mcp.json fragment',
      security,
      body: z.strictObject({
        identifier: z.string().describe('Your id for the end user; it needs an ACTIVE connected account.'),
        connection_names: z.array(z.string().max(100)).min(1).max(50).optional(),
        expiry: z
          .union([z.string(), z.number()])
          .optional()
          .describe('60s to 30d, e.g. "3600s", "12h", "7d". Default 3600s.'),
      }),
      response: {
        201: z.object({
          token: z.string(),
          token_id: z.string(),
          url: z.string(),
          expires_at: z.string(),
          cursor_config: z.object({
            mcpServers: z.record(
              z.string(),
              z.object({ url: z.string(), headers: z.record(z.string(), z.string()) }),
            ),
          }),
        }),
        ...errorResponses,
      },
    },
    handler: async (request, reply) => {
      const caller = tenantOf(request);
      const identifier = validateIdentifier(request.body.identifier);
      const expirySeconds = parseExpiry(request.body.expiry ?? '3600s', 'expiry');
      const names = request.body.connection_names ?? null;
      if (names) {
        const known = await deps.db.kysely
          .selectFrom('connections')
          .select('name')
          .where('tenant_id', '=', caller.tenantId)
          .execute();
        const unknown = names.filter((n) => !known.some((k) => k.name === n));
        if (unknown.length > 0) {
          throw new WardenError(
            'invalid_request',
            `connection_names: unknown connection '${unknown[0]}'; this tenant has: ${known.map((k) => k.name).join(', ')}`,
            {
              field: 'connection_names',
            },
          );
        }
      }
      const { token, record } = await deps.mcpTokens.create({
        ctx: actorOf(request),
        identifier,
        connectionNames: names,
        expirySeconds,
        audience: mcpUrl,
        createdBy: principalRef(caller),
      });
      return reply.code(201).send({
        token,
        token_id: record.id,
        url: mcpUrl,
        expires_at: record.expiresAt.toISOString(),
        cursor_config: {
          mcpServers: { cloudflare: { url: mcpUrl, headers: { Authorization: `Bearer ${token}` } } },
        },
      });
    },
  });

  r.get('/api/v1/mcp/tokens', {
    schema: {
      tags: ['mcp'],
      summary: "An identity's MCP tokens, oldest first, live or not (never the secret)",
      security,
      querystring: z.object({
        identifier: z.string().describe('Your id for the end user.'),
        page_size: pageSize,
        page_token: z.string().max(500).optional(),
      }),
      response: {
        200: z.object({ mcp_tokens: z.array(mcpTokenSchema), next_page_token: z.string().nullable() }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const q = request.query;
      const page = await deps.mcpTokens.list(tenantOf(request).tenantId, {
        identifier: q.identifier,
        ...(q.page_size !== undefined ? { pageSize: q.page_size } : {}),
        ...(q.page_token !== undefined ? { pageToken: q.page_token } : {}),
      });
      const now = new Date();
      return { mcp_tokens: page.items.map((t) => tokenJson(t, now)), next_page_token: page.nextPageToken };
    },
  });

  r.delete('/api/v1/mcp/tokens/:id', {
    schema: {
      tags: ['mcp'],
      summary: 'Revoke an MCP token at once, on every replica',
      security,
      params: z.object({ id: z.string().max(100) }),
      response: { 204: z.null(), ...errorResponses },
    },
    handler: async (request, reply) => {
      await deps.mcpTokens.revoke(actorOf(request), request.params.id);
      return reply.code(204).send(null);
    },
  });
}
