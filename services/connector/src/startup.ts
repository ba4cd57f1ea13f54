import { migrateToLatest } from '@warden/db';
import { recheckOf, recheckPeriodMs } from '@warden/vault';
import type { Invalidation } from '@warden/tools';
import { purgeExpiredOAuthArtifacts } from './oauth/oauth-artifacts.ts';
import {
  API_KEY_REVOKE_CHANNEL,
  INVALIDATION_CHANNEL,
  KEYS_RETIRED_CHANNEL,
  MIGRATIONS_FOLDER,
  evictionPolicy,
  evictionProblem,
} from './container.ts';
import type { Container } from './container.ts';
import { forgetRetiredKey } from './key-retirement.ts';

/**
 * The service's start-up tasks, in order: migrations, the database clock, Redis and the bus
 * (never fatal: requests needing Redis answer 503 or use the local fallback until it is back,
 * and `/readyz` says so), Code Mode (spec and sandboxes, retried in the background), the first
 * audit maintenance pass, then the periodic jobs.
 */
export async function startContainer(c: Container, options: { jobs?: boolean } = {}): Promise<void> {
  const { config, logger } = c;
  if (config.migrateOnStart) {
    const { applied } = await migrateToLatest(c.db.kysely, MIGRATIONS_FOLDER);
    if (applied.length > 0) logger.info({ applied }, 'database migrations applied');
  }
  await c.clock.sync().catch((err: unknown) => logger.warn({ err }, 'could not read the database clock'));
  c.clock.start();
  if (c.redis) {
    await c.redis.connect().catch((err: unknown) => {
      logger.warn({ err }, 'Redis is unreachable at start-up; retrying in the background');
    });
    // Reported by /readyz on every poll as well; said here once so it is in the start-up log.
    const policy = await evictionPolicy(c.redis).catch(() => null);
    if (policy !== null && policy !== 'noeviction') logger.error({ policy }, evictionProblem(policy));
  }
  await c.bus.start();
  await c.bus.subscribe(API_KEY_REVOKE_CHANNEL, (message) => {
    const keyId = (message as { keyId?: unknown } | null)?.keyId;
    if (typeof keyId === 'string') c.tenants.forgetApiKey(keyId);
  });
  await c.bus.subscribe(KEYS_RETIRED_CHANNEL, () => {
    forgetRetiredKey(c);
    logger.info({}, 'a key was retired: forgot it and every data key it unwrapped');
  });
  // A retirement announced while this replica could not hear it: read the keys again anyway.
  c.bus.onResumed(() => {
    forgetRetiredKey(c);
    logger.info({}, 'event bus back: read the key file again and forgot every unwrapped data key');
  });
  await c.bus.subscribe(INVALIDATION_CHANNEL, (message) => {
    const change = message as Invalidation | null;
    if (
      change &&
      typeof change.tenantId === 'string' &&
      (change.reason === 'revoked' || change.reason === 'changed')
    ) {
      c.applyInvalidation(change);
    }
  });
  await c.codeMode.start();
  if (options.jobs === false) return;
  await c.auditMaintenance
    .partitions()
    .catch((err: unknown) => logger.warn({ err }, 'audit maintenance failed'));
  c.scheduler.every('outbox-dispatch', config.outboxIntervalMs, async () => {
    await c.outbox.dispatchOnce();
  });
  c.scheduler.every('audit-maintenance', 3600_000, async () => {
    await c.auditMaintenance.partitions();
  });
  c.scheduler.every('oauth-purge', 3600_000, async () => {
    await purgeExpiredOAuthArtifacts(c.db.kysely);
  });
  c.scheduler.every('approvals-expiry', 60_000, async () => {
    await c.approvals.expireDue();
  });
  const recheck = recheckOf(c.domainProof);
  if (recheck) {
    c.scheduler.every('sso-domain-recheck', recheckPeriodMs(recheck), async () => {
      await c.ssoDomainRecheck.runOnce();
    });
  }
  c.scheduler.every('audit-outcome-sweep', 60_000, async () => {
    await c.auditMaintenance.sweepUnknownOutcomes();
  });
  const checkpoints = c.auditCheckpoints;
  if (checkpoints) {
    c.scheduler.every('audit-checkpoint', config.auditCheckpointIntervalMs, async () => {
      await checkpoints.run('interval');
    });
  } else {
    logger.warn(
      {},
      'audit checkpoints are off: set AWS_KMS_SIGNING_KEY_ID to an asymmetric KMS key so a rewritten audit history can be detected',
    );
  }
  await c.scheduler.start();
}
