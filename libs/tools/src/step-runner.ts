import type { AuditStore } from '@warden/audit';
import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';
import { resolveCloudflareAccount } from './account-resolution.ts';
import type { StepRunner } from './approvals.service.ts';
import type { CallContextSource, LiveCalls } from './call-context.ts';
import { Execution } from './execution.ts';
import type { CodeRunner } from './ports.ts';
import type { UpstreamGateway } from './upstream-gateway.ts';

export interface StepRunnerDeps {
  readonly contexts: CallContextSource;
  readonly liveCalls: LiveCalls;
  readonly gateway: UpstreamGateway;
  readonly runner: CodeRunner;
  readonly audit: AuditStore;
  readonly clock?: Clock;
}

/**
 * Runs a plan's agent code again for an apply in steps: a fresh sandbox, the identity's context
 * as it stands now, `cloudflare.request` and the SDK-style calls only (no R2, no tails). Reads
 * go to Cloudflare through the gateway (policy, budget, trail); every write goes to the replay
 * plan, which answers the ones already applied and holds the rest, so the run sends no write.
 */
export function createStepRunner(deps: StepRunnerDeps): StepRunner {
  const clock = deps.clock ?? systemClock;
  return {
    async run(run) {
      const target = { identifier: run.identifier, connectedAccountId: run.connectedAccountId };
      const context = await deps.contexts.load(run.caller, target, { fresh: true });
      const accountId = resolveCloudflareAccount(context.account.account, run.accountId ?? undefined);
      const execution = new Execution(
        {
          contexts: deps.contexts,
          liveCalls: deps.liveCalls,
          gateway: deps.gateway,
          audit: deps.audit,
          clock,
        },
        {
          caller: run.caller,
          tool: 'cloudflare_execute',
          target,
          code: run.code,
          ...(run.accountId !== null ? { accountId: run.accountId } : {}),
          agentRunId: null,
          context,
          replay: run.plan,
        },
      );
      let outcome;
      try {
        await execution.open();
        outcome = await deps.runner.execute(run.code, {
          tenant: run.caller.tenantId,
          accountId,
          upstream: (request, c) => execution.upstream(request, c.signal),
        });
      } catch (error) {
        execution.release();
        throw error;
      }
      const result = await execution.finish(outcome);
      return { executionId: result.executionId, error: result.error };
    },
  };
}
