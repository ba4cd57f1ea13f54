import type { FastifyInstance } from 'fastify';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { UpstreamBudget } from '@warden/ratelimit';
import type { StepTimings } from '../step-timings.ts';

/**
 * Prometheus metrics at GET /metrics: process metrics, HTTP request durations by route
 * template (never by concrete URL, so ids and identifiers do not become label values),
 * tool executions by tool and outcome, upstream requests the rate budget refused by budget and
 * reason, how long requests waited in the egress queue, and how long Cloudflare took to answer
 * and the audit trail to commit (what a tool call waits on besides its own code).
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

/** The status label of an upstream request: its class, 429 on its own, or no_answer. */
function statusLabel(status: number | null): string {
  if (status === null) return 'no_answer';
  if (status === 429) return '429';
  return status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'other';
}

export async function metricsRoutes(
  app: FastifyInstance,
  metrics: Metrics,
  budget: Pick<UpstreamBudget, 'onEvent'>,
  stepTimings: Pick<StepTimings, 'onEvent'>,
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
  const upstream = new Histogram({
    name: 'warden_upstream_request_duration_seconds',
    help: 'Cloudflare API requests from sending to the answer (or its failure), by status: 2xx, 3xx, 4xx, 429, 5xx, no_answer',
    labelNames: ['status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [metrics.registry],
  });
  const auditAppend = new Histogram({
    name: 'warden_audit_append_duration_seconds',
    help: "Audit appends from the call to the commit, waiting behind the tenant's write in flight included, by outcome: committed or failed",
    labelNames: ['outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics.registry],
  });
  const unsubscribeSteps = stepTimings.onEvent((timing) => {
    if (timing.step === 'upstream')
      upstream.observe({ status: statusLabel(timing.status) }, timing.ms / 1000);
    else auditAppend.observe({ outcome: timing.committed ? 'committed' : 'failed' }, timing.ms / 1000);
  });
  app.addHook('onClose', async () => {
    unsubscribe();
    unsubscribeSteps();
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
