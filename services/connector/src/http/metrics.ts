import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { UpstreamBudget } from '@warden/ratelimit';

/**
 * Prometheus metrics at GET /metrics: process metrics, HTTP request durations by route
 * template (never by concrete URL, so ids and identifiers do not become label values),
 * tool executions by tool and outcome, upstream requests the rate budget refused by budget and
 * reason, and how long requests waited in the egress queue.
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

export async function metricsRoutes(
  app: FastifyInstance,
  metrics: Metrics,
  budget: Pick<UpstreamBudget, 'onEvent'>,
): Promise<void> {
  const refusals = new Counter({
    name: 'warden_upstream_refusals_total',
    help: 'Upstream requests the rate budget refused, by budget (rest, graphql, egress) and reason (window, cloudflare, probe, blocked, queue_timeout, queue_full)',
    labelNames: ['budget', 'reason'] as const,
    registers: [metrics.registry],
  });
  const egressWait = new Histogram({
    name: 'warden_egress_queue_wait_seconds',
    help: 'How long upstream requests waited for the egress (per-IP) budget, admitted or not',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics.registry],
  });
  const unsubscribe = budget.onEvent((event) => {
    if (event.type === 'refused') refusals.inc({ budget: event.budget, reason: event.reason });
    else egressWait.observe(event.ms / 1000);
  });
  app.addHook('onClose', async () => {
    unsubscribe();
  });
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
