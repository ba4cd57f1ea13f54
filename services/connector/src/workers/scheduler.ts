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
  /** What keeps the jobs from running on time, in sentences for `/readyz` (empty when none). */
  health(): Promise<string[]>;
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
    async health() {
      return [];
    },
    async close() {
      for (const timer of timers) clearInterval(timer);
    },
  };
}

const QUEUE = 'jobs';
const ENSURE_PATIENCE_MS = 5_000;

export interface BullSchedulerOptions {
  readonly prefix: string;
  /** How often the schedules are checked (and re-created when Redis lost them). Default 30 s. */
  readonly checkMs?: number;
}

/**
 * BullMQ keys live under the deployment's Redis prefix, so deployments on one Redis keep their
 * own schedules. Redis may be down at start, restart empty or evict keys: nothing here waits for
 * it. The schedules are (re-)created whenever the connection becomes ready and checked every
 * `checkMs`; each run's time is kept in Redis, so `health()` on any replica can say which job
 * has not run within its interval.
 */
export function createBullScheduler(
  redisUrl: string,
  logger: Logger,
  options: BullSchedulerOptions,
): Scheduler {
  const checkMs = options.checkMs ?? 30_000;
  // BullMQ needs blocking commands that wait forever; it gets its own connections.
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: true });
  connection.on('error', () => {});
  // Plain commands (run times, health) fail fast instead of queueing while Redis is away.
  const plain = new Redis(redisUrl, { maxRetriesPerRequest: 1, lazyConnect: true, commandTimeout: 2_000 });
  const runsKey = `${options.prefix}:scheduler:runs`;
  const handlers = new Map<string, () => Promise<void>>();
  const schedules: Array<{ name: string; intervalMs: number }> = [];
  let queue: Queue | null = null;
  let worker: Worker | null = null;
  let timer: NodeJS.Timeout | undefined;
  let startedAt = 0;
  let ensuring: Promise<void> | null = null;
  let ensuringSince = 0;
  let closed = false;
  // BullMQ reports every failed reconnection: one line per outage is enough.
  let erring = false;
  const quiet = (err: Error, message: string) => {
    if (erring) return;
    erring = true;
    logger.warn({ err }, `${message} (further errors are not logged until Redis is back)`);
  };

  /**
   * Creates the schedules Redis does not hold (all of them after a restart or an eviction), and
   * again those overdue (their entry kept, their next run lost).
   */
  function ensure(): Promise<void> {
    // A check queued while Redis was down may never answer: after a while, start another.
    if (ensuring && performance.now() - ensuringSince < ENSURE_PATIENCE_MS) return ensuring;
    ensuringSince = performance.now();
    const attempt: Promise<void> = (async () => {
      const q = queue;
      if (!q || closed) return;
      let created = 0;
      const runs = (await plain.hgetall(runsKey)) ?? {};
      const upFor = performance.now() - startedAt;
      for (const { name, intervalMs } of schedules) {
        if (await q.getJobScheduler(name)) {
          // A schedule whose next run was lost (its delayed job evicted, the entry kept) never
          // fires again: one that is overdue is made again from scratch.
          const last = Number(runs[name] ?? 0);
          const since = last > 0 ? Date.now() - last : upFor;
          if (since <= 2 * intervalMs + checkMs) continue;
          await q.removeJobScheduler(name);
        }
        await q.upsertJobScheduler(
          name,
          { every: intervalMs },
          { name, data: {}, opts: { removeOnComplete: 100, removeOnFail: 100 } },
        );
        created++;
      }
      if (created > 0 && startedAt > 0 && performance.now() - startedAt > checkMs) {
        logger.warn(
          { created },
          'job schedules were missing or stalled in Redis (restart or eviction); created them again',
        );
      }
    })()
      .catch((err: unknown) => logger.warn({ err }, 'could not check the job schedules in Redis; retrying'))
      .finally(() => {
        if (ensuring === attempt) ensuring = null;
      });
    ensuring = attempt;
    return attempt;
  }

  return {
    every(name, intervalMs, handler) {
      handlers.set(name, handler);
      schedules.push({ name, intervalMs });
    },
    async start() {
      startedAt = performance.now();
      // BullMQ gives up on a connection that failed its first handshake: the queue and the
      // worker are made once Redis has answered, and live through later outages.
      const open = () => {
        if (queue || closed) return;
        queue = new Queue(QUEUE, { connection, prefix: options.prefix });
        queue.on('error', (err) => quiet(err, 'job queue error'));
        worker = new Worker(
          QUEUE,
          async (job) => {
            const handler = handlers.get(job.name);
            if (!handler) return;
            await handler();
            await plain.hset(runsKey, job.name, String(Date.now())).catch(() => undefined);
          },
          {
            connection: connection.duplicate(),
            prefix: options.prefix,
            concurrency: Math.max(1, schedules.length),
          },
        );
        worker.on('error', (err) => quiet(err, 'job worker error'));
        worker.on('failed', (job, err) => logger.warn({ err, job: job?.name }, 'scheduled job failed'));
      };
      plain.on('error', (err) => quiet(err, 'job scheduler: Redis error'));
      plain.on('ready', () => {
        erring = false;
        open();
        void ensure();
      });
      timer = setInterval(() => void ensure(), checkMs);
      timer.unref();
      void plain.connect().catch(() => undefined);
    },
    async health() {
      if (closed) return [];
      const problems: string[] = [];
      const runs = await plain.hgetall(runsKey).catch(() => null);
      if (!runs)
        return ['Redis is unreachable: scheduled jobs (outbox delivery, audit maintenance) are not running'];
      // Local time for both ends: every replica writes and reads run times on its own clock, and
      // the allowance below is far wider than any skew the database clock would correct.
      const now = Date.now();
      const upFor = performance.now() - startedAt;
      for (const { name, intervalMs } of schedules) {
        const allowed = 2 * intervalMs + checkMs;
        const last = Number(runs[name] ?? 0);
        const since = last > 0 ? now - last : upFor;
        if (since > allowed) {
          problems.push(
            `scheduled job ${name} has not run for ${Math.round(since / 1000)} s (every ${Math.round(intervalMs / 1000)} s)`,
          );
        }
      }
      const missing =
        !queue ||
        (await queue.getJobSchedulersCount().then(
          (n) => n < schedules.length,
          () => true,
        ));
      if (missing) {
        void ensure();
        problems.push('job schedules are missing from Redis; creating them again');
      } else if (problems.length > 0) {
        void ensure();
      }
      return problems;
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await worker?.close();
      await queue?.close();
      await connection.quit().catch(() => connection.disconnect());
      await plain.quit().catch(() => plain.disconnect());
    },
  };
}
