import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ReadinessProblem } from '../readiness.ts';
import type { ReadinessCheck } from '../readiness.ts';

const CHECK_TIMEOUT_MS = 2_000;

interface CheckResult {
  readonly status: 'ok' | 'degraded' | 'unavailable';
  readonly problem?: string;
}

async function runCheck(check: ReadinessCheck): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      check.check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { status: result === 'degraded' ? 'degraded' : 'ok' };
  } catch (error) {
    return error instanceof ReadinessProblem
      ? { status: 'unavailable', problem: error.message }
      : { status: 'unavailable' };
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
    /** What an operator must fix, per check, where the check could say it safely. */
    problems: z.record(z.string(), z.string()).optional(),
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
      const checks = Object.fromEntries(results.map(([name, r]) => [name, r.status]));
      const problems = Object.fromEntries(
        results.flatMap(([name, r]) => (r.problem ? [[name, r.problem] as const] : [])),
      );
      const ready = results.every(([, r]) => r.status !== 'unavailable');
      return reply.code(ready ? 200 : 503).send({
        status: ready ? 'ready' : 'unavailable',
        checks,
        ...(Object.keys(problems).length > 0 ? { problems } : {}),
      });
    },
  });
}
