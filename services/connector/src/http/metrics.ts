import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics at GET /metrics: process metrics, HTTP request durations by route
 * template (never by concrete URL, so ids and identifiers do not become label values),
 * and tool executions by tool and outcome.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly toolCalls: Counter<'tool' | 'outcome'>;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'warden_' });
  const toolCalls = new Counter({
    name: 'warden_tool_calls_total',
    help: 'Tool calls by tool and outcome (success or the error code)',
    labelNames: ['tool', 'outcome'] as const,
    registers: [registry],
  });
  return { registry, toolCalls };
}

export async function metricsRoutes(app: FastifyInstance, metrics: Metrics): Promise<void> {
  const duration = new Histogram({
    name: 'warden_http_request_duration_seconds',
    help: 'HTTP request duration by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [metrics.registry],
  });
  app.addHook('onResponse', async (request, reply) => {
    duration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}
