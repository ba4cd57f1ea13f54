import type { ExecuteToolService, ScopedToolsService, ToolCaller } from '@warden/tools';
import { approvalJson, truncationJson } from '@warden/tools';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { tenantAuth, tenantOf } from './auth.ts';
import type { Container } from '../container.ts';
import { errorResponses, pageSize } from './schemas.ts';

const security = [{ tenantKey: [] }];

/** The API address of an approval, for agents and notifications. */
export function approvalUrl(publicUrl: string, id: string): string {
  return `${publicUrl.replace(/\/$/, '')}/api/v1/approvals/${id}`;
}

export function apiKeyCaller(request: FastifyRequest): ToolCaller {
  const caller = tenantOf(request);
  return { tenantId: caller.tenantId, type: caller.type, id: caller.id, ip: request.ip };
}

/**
 * Aborted when the caller goes away before its answer was written (the client aborted, its
 * connection dropped). Not Fastify's `request.signal`: that one follows the request stream, which
 * closes as soon as a POST body has been read.
 */
function callerGone(reply: FastifyReply): AbortSignal {
  const gone = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}

const toolDefinition = z
  .object({
    name: z.string(),
    description: z.string(),
    input_schema: z.record(z.string(), z.unknown()),
  })
  .meta({ id: 'ToolDefinition' });

export async function toolRoutes(
  app: FastifyInstance,
  deps: Pick<Container, 'tenants' | 'config'> & {
    scopedTools: ScopedToolsService;
    executeTool: ExecuteToolService;
  },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.addHook('onRequest', tenantAuth(deps.tenants));

  r.get('/api/v1/tools/scoped', {
    schema: {
      tags: ['tools'],
      summary: 'Tools the identifier may use now (list_scoped_tools)',
      security,
      querystring: z.object({
        identifier: z.string().describe('Your id for the end user.'),
        connection_names: z.string().optional().describe('Comma-separated connection names to include.'),
        page_size: pageSize,
        page_token: z.string().max(200).optional(),
      }),
      response: {
        200: z.object({
          tools: z.array(
            z.object({
              connection_name: z.string(),
              connected_account_id: z.string(),
              tool: z.object({ definition: toolDefinition }),
            }),
          ),
          next_page_token: z.string().nullable(),
        }),
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const q = request.query;
      const page = await deps.scopedTools.list(apiKeyCaller(request), {
        identifier: q.identifier,
        ...(q.connection_names !== undefined
          ? {
              connectionNames: q.connection_names
                .split(',')
                .map((s) => s.trim())
                .filter(Boolean),
            }
          : {}),
        ...(q.page_size !== undefined ? { pageSize: q.page_size } : {}),
        ...(q.page_token !== undefined ? { pageToken: q.page_token } : {}),
      });
      return {
        tools: page.tools.map((t) => ({
          connection_name: t.connectionName,
          connected_account_id: t.connectedAccountId,
          tool: {
            definition: {
              name: t.definition.name,
              description: t.definition.description,
              input_schema: t.definition.inputSchema,
            },
          },
        })),
        next_page_token: page.nextPageToken,
      };
    },
  });

  r.post('/api/v1/execute_tool', {
    // Agent code is data: any string (NUL included) runs, and the audit trail stores it escaped.
    config: { rawTextFields: ['params'] },
    schema: {
      tags: ['tools'],
      summary: 'Run cloudflare_search or cloudflare_execute for an identifier (execute_tool)',
      description:
        'Tool failures (thrown errors, upstream errors, timeouts, policy refusals) answer 200 with `data: null` and `error`; only caller errors are 4xx. `logs` holds what the code wrote with console.log (also when it failed), cut with a marker line past the sandbox limit (16 KB).',
      security,
      body: z.strictObject({
        tool_name: z.string().describe('cloudflare_search or cloudflare_execute'),
        identifier: z.string(),
        params: z
          .record(z.string(), z.unknown())
          .describe('{code} for search; {code, account_id?} for execute'),
        connection_name: z.string().optional(),
        connected_account_id: z.string().optional(),
        agent_run_id: z
          .string()
          .min(1)
          .max(200)
          .refine((v) => !/\p{Cc}/u.test(v), 'must be printable text such as a UUID (no control characters)')
          .optional()
          .describe(
            'Your id for the agent run, recorded in the audit trail; printable text, at most 200 characters.',
          ),
      }),
      response: {
        200: z.object({
          data: z.unknown(),
          error: z.object({ code: z.string(), message: z.string() }).optional(),
          logs: z
            .array(z.string())
            .optional()
            .describe(
              'console.log lines of the code, when it wrote any; the last says so when some were cut.',
            ),
          truncated: z
            .object({ original_chars: z.number(), original_tokens: z.number(), kept_chars: z.number() })
            .optional()
            .describe(
              'Set when the result was cut to fit the result budget (about 6,000 tokens): data then holds the beginning of it, with "…[N more items]" (or characters, keys) marks where things were left out; return less to see the rest.',
            ),
          execution_id: z.string(),
          approval: z
            .record(z.string(), z.unknown())
            .optional()
            .describe(
              'Writes an approve policy rule held: {id, url, status, expires_at, plan, …}; a person approves them at POST /api/v1/approvals/{id}/approve. Also the answer to params {approval_id}.',
            ),
        }),
        ...errorResponses,
        429: errorResponses[400],
      },
    },
    handler: async (request, reply) => {
      const b = request.body;
      const result = await deps.executeTool.run(
        apiKeyCaller(request),
        {
          toolName: b.tool_name,
          identifier: b.identifier,
          params: b.params,
          ...(b.connection_name !== undefined ? { connectionName: b.connection_name } : {}),
          ...(b.connected_account_id !== undefined ? { connectedAccountId: b.connected_account_id } : {}),
          ...(b.agent_run_id !== undefined ? { agentRunId: b.agent_run_id } : {}),
        },
        { signal: callerGone(reply) },
      );
      return {
        data: result.data ?? null,
        ...(result.error ? { error: result.error } : {}),
        ...(result.logs.length > 0 ? { logs: [...result.logs] } : {}),
        ...(result.truncated ? { truncated: truncationJson(result.truncated) } : {}),
        execution_id: result.executionId,
        ...(result.approval
          ? {
              approval: approvalJson(result.approval, {
                url: approvalUrl(deps.config.publicUrl, result.approval.id),
              }),
            }
          : {}),
      };
    },
  });
}
