import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController } from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifyServerOptions } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
} from 'fastify-type-provider-zod';
import { WardenError } from '@warden/core';
import { z } from 'zod';
import type { Container } from './container.ts';
import type { ExecuteToolService } from '@warden/tools';
import { adminRoutes } from './http/admin.routes.ts';
import { approvalRoutes } from './http/approvals.routes.ts';
import { connectedAccountRoutes } from './http/connected-accounts.routes.ts';
import { MAX_PATH_PARAM_CHARS, protocolError, toWireError, validatorCompiler } from './http/error-mapper.ts';
import { adminApiOff } from './http/auth.ts';
import { applyRequestContract, parseQueryString } from './http/request-contract.ts';
import { healthRoutes } from './http/health.routes.ts';
import { auditRoutes, systemAuditRoutes } from './http/audit.routes.ts';
import { mcpTokenRoutes } from './http/mcp-tokens.routes.ts';
import { policyRoutes } from './http/policy.routes.ts';
import { settingsRoutes } from './http/settings.routes.ts';
import { toolRoutes } from './http/tools.routes.ts';
import { mcpRoutes } from './mcp/mcp.routes.ts';
import { deliveryRoutes } from './http/delivery.routes.ts';
import { createMetrics, metricsRoutes } from './http/metrics.ts';
import { setUpMcpOAuth } from './oauth/mcp-oauth.ts';
import { SESSION_PATHS, setUpConsole } from './console/console.routes.ts';

const REQUEST_ID = /^[A-Za-z0-9._-]{8,64}$/;

export interface AppOptions {
  /** A pino logger instance (the container's); Fastify logs requests through it. */
  readonly loggerInstance: NonNullable<FastifyServerOptions['loggerInstance']>;
}

const ROUTE_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/**
 * @fastify/swagger marks every request body required; a route whose body schema is optional
 * (POST …/offboard) is flagged in the per-route transform and set right in the document.
 */
const OPTIONAL_BODY = 'x-warden-optional-body';

function optionalRequestBodies<T>(document: T): T {
  const paths = (document as { paths?: Record<string, Record<string, Record<string, unknown>>> }).paths ?? {};
  for (const operations of Object.values(paths)) {
    for (const operation of Object.values(operations)) {
      if (operation[OPTIONAL_BODY] !== true) continue;
      delete operation[OPTIONAL_BODY];
      const body = operation.requestBody as { required?: boolean } | undefined;
      if (body) body.required = false;
    }
  }
  return document;
}

/** What the single log line of a refused or failed request adds to the access fields. */
interface Outcome {
  readonly code: string;
  readonly field?: string;
  readonly err?: unknown;
}

/**
 * A request that never reached a request object (not HTTP, headers too large, too slow): the
 * same envelope, written to the socket, since there is nothing else to answer with.
 */
function clientErrorHandler(logger: AppOptions['loggerInstance'], bodyLimit: number) {
  return (error: Error & { code?: string }, socket: Socket): void => {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const refusal =
      error.code === 'HPE_HEADER_OVERFLOW'
        ? protocolError(
            431,
            'headers: the request line and headers exceed the 16 KB limit; shorten the URL (send long values in a JSON body) or the headers',
            { field: 'headers' },
          )
        : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? protocolError(408, 'request: was not received in time; send it again')
          : new WardenError(
              'invalid_request',
              'request: is not valid HTTP/1.1; check the request line, the headers and the body framing',
            );
    const requestId = randomUUID();
    const wire = toWireError(refusal, { requestId, bodyLimit });
    const body = JSON.stringify(wire.body);
    logger.info({ code: error.code, status: wire.status, reqId: requestId }, 'malformed request refused');
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${wire.status} ${STATUS_CODES[wire.status] ?? 'Error'}\r\n` +
          `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

/** Builds the HTTP app from a container. main.ts listens; tests use `app.inject`. */
export async function buildApp(container: Container, options: AppOptions): Promise<FastifyInstance> {
  const { config } = container;
  const outcomes = new WeakMap<FastifyRequest, Outcome>();
  /** Every refusal and failure leaves through here, in the one envelope. */
  const sendError = (error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const wire = toWireError(error, { requestId: request.id, bodyLimit: config.bodyLimitBytes });
    const { code, field } = wire.body.error;
    outcomes.set(request, {
      code,
      ...(field ? { field } : {}),
      ...(wire.status >= 500 ? { err: error } : {}),
    });
    return reply.code(wire.status).headers(wire.headers).send(wire.body);
  };

  const app = Fastify({
    loggerInstance: options.loggerInstance,
    // One line per request, written in onResponse below (Fastify's own logging writes two).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy === false ? false : [...config.trustProxy],
    // Honour a well-formed id from a proxy so logs correlate; otherwise make one.
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    // Requests arriving while closing are refused in onRequest, in the error envelope.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    routerOptions: {
      ignoreTrailingSlash: true,
      maxParamLength: MAX_PATH_PARAM_CHARS,
      querystringParser: parseQueryString,
    },
    // Router-level refusals (bad percent-encoding, over-long parameter) never reach a route's hooks.
    frameworkErrors: (error, request, reply) => {
      // Refused before any route or hook ran: an error, never to be cached.
      reply.header('x-request-id', request.id).header('cache-control', 'no-store');
      void sendError(error, request, reply);
      const outcome = outcomes.get(request);
      request.log.info(
        { req: request, res: { statusCode: reply.statusCode }, code: outcome?.code, field: outcome?.field },
        'request completed',
      );
    },
    clientErrorHandler: clientErrorHandler(options.loggerInstance, config.bodyLimitBytes),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.addHook('onRoute', applyRequestContract);
  /** Routes that exist only to refuse their method (`config.refusesMethod`), as `METHOD /path`. */
  const refusingRoutes = new Set<string>();
  app.addHook('onRoute', (route) => {
    if (route.config?.refusesMethod) {
      for (const method of [route.method].flat()) refusingRoutes.add(`${method} ${route.url}`);
    }
  });

  // Every body is JSON. An empty one (Content-Type set, nothing sent) counts as no body, so an
  // optional body (POST …/offboard) may be left out by clients that always send the header.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body.toString();
    if (text.trim() === '') return done(null, undefined);
    return jsonParser(request, text, done);
  });

  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    // Tenant data and a console session's anti-forgery token: no cache keeps them (a route may say
    // otherwise). The route matched counts too: the router decodes `/%61pi/v1/…` to `/api/v1/…`.
    const routed = request.routeOptions.url;
    if (
      SESSION_PATHS.test(request.url.split('?')[0] ?? '/') ||
      (routed !== undefined && SESSION_PATHS.test(routed))
    ) {
      reply.header('cache-control', 'no-store');
    }
    if (closing) {
      reply.header('connection', 'close');
      throw new WardenError(
        'unavailable',
        'the service is shutting down; retry (another replica will answer)',
      );
    }
  });
  app.addHook('onResponse', async (request, reply) => {
    const outcome = outcomes.get(request);
    const line = {
      req: request,
      res: reply,
      responseTime: Math.round(reply.elapsedTime * 100) / 100,
      ...outcome,
    };
    if (reply.statusCode >= 500) request.log.error(line, 'request failed');
    else request.log.info(line, 'request completed');
  });

  app.setErrorHandler((error, request, reply) => sendError(error, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '/';
    if (path.startsWith('/admin/') && !config.adminToken) return sendError(adminApiOff(), request, reply);
    // A route that only refuses its method (GET /mcp answers 405 itself) is not one to name.
    const allowed = ROUTE_METHODS.filter(
      (method) =>
        app.findRoute({ method, url: path }) !== null &&
        // Routing ignores a trailing slash; so does this.
        !refusingRoutes.has(`${method} ${path.replace(/(?<=.)\/+$/, '')}`),
    );
    if (allowed.length > 0) {
      const refusal = protocolError(
        405,
        `method: ${request.method} is not allowed on ${path}; it accepts ${allowed.join(', ')}`,
        { field: 'method', allow: allowed.join(', ') },
      );
      return sendError(refusal, request, reply);
    }
    return sendError(
      new WardenError('not_found', `no route ${request.method} ${path}; the API reference is at /docs`),
      request,
      reply,
    );
  });

  const metrics = createMetrics();
  await metricsRoutes(app, metrics, container.rateBudget, container.stepTimings);
  // Both front doors (REST and MCP) run tools through this, so the counter sees every call.
  const executeTool: ExecuteToolService = {
    async run(caller, input, options) {
      const result = await container.executeTool.run(caller, input, options);
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
    transform: (document) => {
      const result = jsonSchemaTransform(document);
      const body = (document.schema as { body?: unknown } | undefined)?.body;
      return body instanceof z.ZodOptional
        ? { ...result, schema: { ...result.schema, [OPTIONAL_BODY]: true } }
        : result;
    },
    transformObject: (document) => optionalRequestBodies(jsonSchemaTransformObject(document)),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  // Before the API routes: a console session authenticates them in place of a bearer value.
  const consoleSignIn = await setUpConsole(app, container);
  await app.register(async (scope) => healthRoutes(scope, container));
  await app.register(async (scope) => adminRoutes(scope, container));
  await app.register(async (scope) => systemAuditRoutes(scope, container));
  await app.register(async (scope) => connectedAccountRoutes(scope, container));
  await app.register(async (scope) => toolRoutes(scope, { ...container, executeTool }));
  await app.register(async (scope) => approvalRoutes(scope, container));
  await app.register(async (scope) => policyRoutes(scope, container));
  await app.register(async (scope) =>
    settingsRoutes(scope, {
      tenants: container.tenants,
      settings: container.settings,
      onRetentionChange: () => container.auditMaintenance.partitions(),
    }),
  );
  await app.register(async (scope) => mcpTokenRoutes(scope, container));
  await app.register(async (scope) => auditRoutes(scope, container));
  await app.register(async (scope) => deliveryRoutes(scope, container));
  const oauth = await setUpMcpOAuth(app, container, consoleSignIn);
  await app.register(async (scope) =>
    mcpRoutes(scope, {
      oauth,
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
