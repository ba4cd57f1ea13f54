import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ReadinessCheck } from '../readiness.ts';

const CHECK_TIMEOUT_MS = 2_000;

async function runCheck(check: ReadinessCheck): Promise<'ok' | 'degraded' | 'unavailable'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      check.check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
      }),
    ]);
    return result === 'degraded' ? 'degraded' : 'ok';
  } catch {
    return 'unavailable';
  } finally {
    clearTimeout(timer);
  }
}

export async function healthRoutes(
  app: FastifyInstance,
  deps: { readiness: readonly ReadinessCheck[] },
): Promise<void> {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/healthz', {
    schema: {
      tags: ['operations'],
      summary: 'Process is alive',
      response: { 200: z.object({ status: z.literal('ok') }) },
    },
    handler: async () => ({ status: 'ok' as const }),
  });

  const readyBody = z.object({
    status: z.enum(['ready', 'unavailable']),
    checks: z.record(z.string(), z.enum(['ok', 'degraded', 'unavailable'])),
  });
  r.get('/readyz', {
    schema: {
      tags: ['operations'],
      summary: 'Dependencies (database, KMS, Redis, spec) can serve',
      response: { 200: readyBody, 503: readyBody },
    },
    handler: async (_request, reply) => {
      const results = await Promise.all(
        deps.readiness.map(async (c) => [c.name, await runCheck(c)] as const),
      );
      const checks = Object.fromEntries(results);
      const ready = results.every(([, v]) => v !== 'unavailable');
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'unavailable', checks });
    },
  });
}
