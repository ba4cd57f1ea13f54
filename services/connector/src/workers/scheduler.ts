import type { Logger } from '@warden/core';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';

/**
 * Periodic jobs (outbox dispatch, audit maintenance). With Redis they are BullMQ job
 * schedulers: one run per tick across all replicas, on whichever replica's worker takes
 * it. Without Redis (single node), in-process timers. Handlers are thin: they call
 * domain services, and keep nothing but ids in job data.
 */
export interface Scheduler {
  every(name: string, intervalMs: number, handler: () => Promise<void>): void;
  start(): Promise<void>;
  close(): Promise<void>;
}

export function createLocalScheduler(logger: Logger): Scheduler {
  const jobs: Array<{ name: string; intervalMs: number; handler: () => Promise<void> }> = [];
  const timers: NodeJS.Timeout[] = [];
  const running = new Set<string>();
  return {
    every(name, intervalMs, handler) {
      jobs.push({ name, intervalMs, handler });
    },
    async start() {
      for (const job of jobs) {
        const tick = () => {
          if (running.has(job.name)) return;
          running.add(job.name);
          job
            .handler()
            .catch((err: unknown) => logger.warn({ err, job: job.name }, 'scheduled job failed'))
            .finally(() => running.delete(job.name));
        };
        const timer = setInterval(tick, job.intervalMs);
        timer.unref();
        timers.push(timer);
      }
    },
    async close() {
      for (const timer of timers) clearInterval(timer);
    },
  };
}

const QUEUE = 'jobs';

/** BullMQ keys live under the deployment's Redis prefix, so deployments on one Redis keep their own schedules. */
export function createBullScheduler(
  redisUrl: string,
  logger: Logger,
  options: { prefix: string },
): Scheduler {
  // BullMQ needs blocking commands that wait forever; it gets its own connections.
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  connection.on('error', () => {});
  const handlers = new Map<string, () => Promise<void>>();
  const schedules: Array<{ name: string; intervalMs: number }> = [];
  let queue: Queue | null = null;
  let worker: Worker | null = null;
  return {
    every(name, intervalMs, handler) {
      handlers.set(name, handler);
      schedules.push({ name, intervalMs });
    },
    async start() {
      queue = new Queue(QUEUE, { connection, prefix: options.prefix });
      queue.on('error', (err) => logger.warn({ err }, 'job queue error'));
      for (const { name, intervalMs } of schedules) {
        await queue.upsertJobScheduler(
          name,
          { every: intervalMs },
          {
            name,
            data: {},
            opts: { removeOnComplete: 100, removeOnFail: 100 },
          },
        );
      }
      worker = new Worker(
        QUEUE,
        async (job) => {
          const handler = handlers.get(job.name);
          if (handler) await handler();
        },
        {
          connection: connection.duplicate(),
          prefix: options.prefix,
          concurrency: Math.max(1, schedules.length),
        },
      );
      worker.on('error', (err) => logger.warn({ err }, 'job worker error'));
      worker.on('failed', (job, err) => logger.warn({ err, job: job?.name }, 'scheduled job failed'));
    },
    async close() {
      await worker?.close();
      await queue?.close();
      await connection.quit().catch(() => connection.disconnect());
    },
  };
}
