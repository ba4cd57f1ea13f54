/**
 * `npm run bench -- policy [--json] [--seconds 1]`: the policy engine's cost per upstream
 * request, worst cases first (issue 21: one rule once froze a replica for 19.7 s).
 *
 * - pathological_rule: the issue's `/**\/**\/…/zzz` (9 `**`, stored before the PUT bound
 *   existed) against a 40-segment path that does not match;
 * - bounded_worst: the most a policy accepted at PUT can cost: MAX_RULES deny rules of
 *   MAX_PATTERN_SEGMENTS segments with MAX_PATTERN_GLOBSTARS `**` each, none matching, against
 *   a path of MAX_PATH_SEGMENTS segments that keeps every automaton state alive;
 * - typical: a ten-rule policy against a DNS record path;
 * - canonical_path: canonicalizePath on a percent-encoded path; graphql_classify: a query.
 *
 * Figures are microseconds per evaluation (mean over the measured run), single-threaded.
 */
import {
  MAX_PATH_SEGMENTS,
  MAX_PATTERN_GLOBSTARS,
  MAX_PATTERN_SEGMENTS,
  MAX_RULES,
  canonicalizePath,
  classifyGraphqlBody,
  evaluatePolicy,
  parsePolicy,
} from '@warden/tools';
import type { Policy } from '@warden/tools';
import { environmentInfo, machineInfo, measureRate, numberArg, round } from './bench-utils.ts';
import type { RateOptions } from './bench-utils.ts';

async function microseconds(op: () => unknown, timing: RateOptions): Promise<number> {
  const { perSecond } = await measureRate(op, { ...timing, batch: 16 });
  return round(1e6 / perSecond, 3);
}

function expectAllowed(policy: Policy, method: string, path: string): void {
  if (!evaluatePolicy(policy, {}, { method, path }).allowed) throw new Error(`${method} ${path} was refused`);
}

export async function run(args: string[]): Promise<Record<string, unknown>> {
  const seconds = numberArg(args, 'seconds', 1);
  const timing: RateOptions = { seconds, warmupSeconds: Math.max(0.25, seconds / 4) };
  const before = machineInfo('start');

  // Stored as-is: the PUT bound refuses this rule, old policies may still hold it.
  const pathological: Policy = {
    rules: [{ effect: 'deny', methods: ['GET'], path: '/**/**/**/**/**/**/**/**/**/zzz' }],
  };
  const deep = `/${Array.from({ length: 40 }, (_, i) => `s${i}`).join('/')}`;
  expectAllowed(pathological, 'GET', deep);

  // `/**/a/a/…/**/a/…/zzz`: every `**` and literal stays alive on an all-`a` path, and the
  // final literal never matches, so each rule walks every state for every segment.
  const perRun = (MAX_PATTERN_SEGMENTS - 1) / MAX_PATTERN_GLOBSTARS;
  const pattern = `/${Array.from({ length: MAX_PATTERN_GLOBSTARS }, () =>
    ['**', ...Array.from({ length: Math.floor(perRun) - 1 }, () => 'a')].join('/'),
  ).join('/')}/zzz`;
  const bounded = parsePolicy(
    {
      rules: Array.from({ length: MAX_RULES }, () => ({ effect: 'deny', methods: ['*'], path: pattern })),
    },
    '',
    'tenant',
  );
  const longest = `/${Array.from({ length: MAX_PATH_SEGMENTS }, () => 'a').join('/')}`;
  expectAllowed(bounded, 'GET', longest);

  const typical = parsePolicy(
    {
      deny_writes_by_default: true,
      rules: [
        ...Array.from({ length: 8 }, (_, i) => ({
          effect: 'deny',
          methods: ['DELETE'],
          path: `/accounts/*/r${i}/**`,
        })),
        { effect: 'allow', methods: ['POST', 'PATCH'], path: '/zones/*/dns_records/**' },
        { effect: 'deny', methods: ['*'], path: '/accounts/*/logpush/**' },
      ],
    },
    '',
    'tenant',
  );
  const dnsRecord = '/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records/372e67954025e0ba6aaa6d586b9e0b59';
  expectAllowed(typical, 'PATCH', dnsRecord);
  const encoded =
    '/accounts/023e105f4ecef8ad9ca31a8372d0c353/storage/kv/namespaces/0f2ac74b498b48028cb68387c421e279/values/caf%c3%a9%2Fmenu%20%31';
  const query = {
    query:
      'query Q($zone: string!) { viewer { zones(filter: { zoneTag: $zone }) { httpRequests1dGroups(limit: 7) { sum { requests bytes } dimensions { date } } } } }',
    variables: { zone: 'z' },
  };
  if (classifyGraphqlBody(query).access !== 'read') throw new Error('the benchmark query is not a read');

  return {
    ...environmentInfo(),
    seconds_per_figure: seconds,
    ...before,
    pathological_rule_us: await microseconds(
      () => evaluatePolicy(pathological, {}, { method: 'GET', path: deep }),
      timing,
    ),
    bounded_worst_rules: MAX_RULES,
    bounded_worst_pattern: pattern,
    bounded_worst_path_segments: MAX_PATH_SEGMENTS,
    bounded_worst_us: await microseconds(
      () => evaluatePolicy(bounded, {}, { method: 'GET', path: longest }),
      timing,
    ),
    typical_us: await microseconds(
      () => evaluatePolicy(typical, {}, { method: 'PATCH', path: dnsRecord }),
      timing,
    ),
    canonical_path_us: await microseconds(() => canonicalizePath(encoded), timing),
    graphql_classify_us: await microseconds(() => classifyGraphqlBody(query), timing),
    ...machineInfo('end'),
  };
}
