import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
} from 'fastify-type-provider-zod';
import type { Container } from './container.ts';
import type { ExecuteToolService } from '@warden/tools';
import { adminRoutes } from './http/admin.routes.ts';
import { connectedAccountRoutes } from './http/connected-accounts.routes.ts';
import { toWireError } from './http/error-mapper.ts';
import { healthRoutes } from './http/health.routes.ts';
import { auditRoutes } from './http/audit.routes.ts';
import { mcpTokenRoutes } from './http/mcp-tokens.routes.ts';
import { policyRoutes } from './http/policy.routes.ts';
import { settingsRoutes } from './http/settings.routes.ts';
import { toolRoutes } from './http/tools.routes.ts';
import { mcpRoutes } from './mcp/mcp.routes.ts';
import { deliveryRoutes } from './http/delivery.routes.ts';
import { createMetrics, metricsRoutes } from './http/metrics.ts';

const REQUEST_ID = /^[A-Za-z0-9._-]{8,64}$/;

export interface AppOptions {
  /** A pino logger instance (the container's); Fastify logs requests through it. */
  readonly loggerInstance: NonNullable<FastifyServerOptions['loggerInstance']>;
}

/** Builds the HTTP app from a container. main.ts listens; tests use `app.inject`. */
export async function buildApp(container: Container, options: AppOptions): Promise<FastifyInstance> {
  const { config } = container;
  const app = Fastify({
    loggerInstance: options.loggerInstance,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy,
    // Honour a well-formed id from a proxy so logs correlate; otherwise make one.
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    routerOptions: { ignoreTrailingSlash: true },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  app.setErrorHandler((error, request, reply) => {
    const wire = toWireError(error, { requestId: request.id, bodyLimit: config.bodyLimitBytes });
    if (wire.status >= 500) request.log.error({ err: error, code: wire.body.error.code }, 'request failed');
    else request.log.info({ code: wire.body.error.code, field: wire.body.error.field }, 'request refused');
    return reply.code(wire.status).headers(wire.headers).send(wire.body);
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${request.url.split('?')[0]}` },
    }),
  );

  const metrics = createMetrics();
  await metricsRoutes(app, metrics, container.rateBudget);
  // Both front doors (REST and MCP) run tools through this, so the counter sees every call.
  const executeTool: ExecuteToolService = {
    async run(caller, input) {
      const result = await container.executeTool.run(caller, input);
      metrics.toolCalls.inc({ tool: input.toolName, outcome: result.error?.code ?? 'success' });
      return result;
    },
  };

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Warden',
        version: '1.0.0',
        description: 'Credential vault and agent connector for the Cloudflare API.',
      },
      components: {
        securitySchemes: {
          tenantKey: { type: 'http', scheme: 'bearer', description: 'Tenant API key (wdn_sk_...)' },
          adminToken: { type: 'http', scheme: 'bearer', description: 'WARDEN_ADMIN_TOKEN' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(async (scope) => healthRoutes(scope, container));
  await app.register(async (scope) => adminRoutes(scope, container));
  await app.register(async (scope) => connectedAccountRoutes(scope, container));
  await app.register(async (scope) => toolRoutes(scope, { ...container, executeTool }));
  await app.register(async (scope) => policyRoutes(scope, container));
  await app.register(async (scope) =>
    settingsRoutes(scope, {
      tenants: container.tenants,
      tenantSettings: container.tenantSettings,
      onRetentionChange: () => container.maintainAudit(),
    }),
  );
  await app.register(async (scope) => mcpTokenRoutes(scope, container));
  await app.register(async (scope) => auditRoutes(scope, container));
  await app.register(async (scope) => deliveryRoutes(scope, container));
  await app.register(async (scope) =>
    mcpRoutes(scope, {
      accounts: container.connectedAccounts,
      policies: container.policies,
      definitions: container.codeMode.definitions,
      executeTool,
      mcpTokens: container.mcpTokens,
      bus: container.bus,
      connections: container.mcpConnections,
      publicUrl: config.publicUrl,
      allowedOrigins: config.mcpAllowedOrigins,
      logger: container.logger,
    }),
  );
  return app;
}
