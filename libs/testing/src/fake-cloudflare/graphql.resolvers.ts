import { canOnAccount, canOnZone } from './fake-cloudflare.access.ts';
import type { Principal } from './fake-cloudflare.access.ts';
import { stableHash } from './fake-cloudflare.ids.ts';
import type { FakeCloudflareState } from './fake-cloudflare.state.ts';
import type { GqlDocument, GqlSelection, GqlValue } from './graphql.parser.ts';

/** A GraphQL error as the analytics API reports it (HTTP 200, `data: null`). */
export class GqlError extends Error {
  readonly path: readonly (string | number)[] | null;
  readonly code: string;
  constructor(message: string, code: string, path: readonly (string | number)[] | null = null) {
    super(message);
    this.name = 'GqlError';
    this.code = code;
    this.path = path;
  }
}

export interface GqlEnv {
  readonly state: FakeCloudflareState;
  readonly principal: Principal;
  /** Keys that grant analytics reads (any one), checked per zone/account. */
  readonly permissions: readonly string[];
  readonly now: Date;
  readonly variables: Readonly<Record<string, unknown>>;
  readonly fragments: GqlDocument['fragments'];
}

type Path = readonly (string | number)[];
type FieldSelection = Extract<GqlSelection, { kind: 'field' }>;

interface GqlType {
  readonly name: string;
  readonly fields: Readonly<Record<string, GqlFieldDef>>;
}

interface GqlFieldDef {
  /** null for a scalar. */
  readonly type: () => GqlType | null;
  readonly args?: readonly string[];
  readonly required?: readonly string[];
  readonly resolve?: (
    parent: unknown,
    args: Record<string, unknown>,
    env: GqlEnv,
    field: FieldSelection,
    path: Path,
  ) => unknown;
}

function valueOf(value: GqlValue, env: GqlEnv): unknown {
  switch (value.kind) {
    case 'variable':
      return env.variables[value.name] ?? null;
    case 'scalar':
      return value.value;
    case 'enum':
      return value.value;
    case 'list':
      return value.values.map((v) => valueOf(v, env));
    case 'object':
      return Object.fromEntries(Object.entries(value.fields).map(([k, v]) => [k, valueOf(v, env)]));
  }
}

function included(
  directives: readonly { name: string; args: Readonly<Record<string, GqlValue>> }[],
  env: GqlEnv,
): boolean {
  for (const d of directives) {
    const condition = d.args.if ? valueOf(d.args.if, env) === true : false;
    if (d.name === 'include' && !condition) return false;
    if (d.name === 'skip' && condition) return false;
  }
  return true;
}

/** Flattens fragment spreads and inline fragments, dropping @skip/@include-excluded selections. */
function collectFields(selections: readonly GqlSelection[], env: GqlEnv, depth = 0): FieldSelection[] {
  if (depth > 20) throw new GqlError('fragments nest too deeply (a cycle?)', 'GRAPHQL_VALIDATION_FAILED');
  const out: FieldSelection[] = [];
  for (const s of selections) {
    if (!included(s.directives, env)) continue;
    if (s.kind === 'field') out.push(s);
    else if (s.kind === 'inline') out.push(...collectFields(s.selections, env, depth + 1));
    else {
      const fragment = env.fragments.get(s.name);
      if (!fragment) throw new GqlError(`Unknown fragment "${s.name}".`, 'GRAPHQL_VALIDATION_FAILED');
      out.push(...collectFields(fragment, env, depth + 1));
    }
  }
  return out;
}

function execute(
  type: GqlType,
  parent: unknown,
  selections: readonly GqlSelection[],
  env: GqlEnv,
  path: Path,
) {
  const out: Record<string, unknown> = {};
  for (const field of collectFields(selections, env)) {
    const key = field.alias ?? field.name;
    const fieldPath = [...path, key];
    if (field.name === '__typename') {
      out[key] = type.name;
      continue;
    }
    const def = type.fields[field.name];
    if (!def) {
      throw new GqlError(
        `Cannot query field "${field.name}" on type "${type.name}".`,
        'GRAPHQL_VALIDATION_FAILED',
        fieldPath,
      );
    }
    const args: Record<string, unknown> = {};
    for (const [name, value] of Object.entries(field.args)) {
      if (!def.args?.includes(name)) {
        throw new GqlError(
          `Unknown argument "${name}" on field "${type.name}.${field.name}".`,
          'GRAPHQL_VALIDATION_FAILED',
          fieldPath,
        );
      }
      args[name] = valueOf(value, env);
    }
    for (const name of def.required ?? []) {
      if (args[name] === undefined || args[name] === null) {
        throw new GqlError(
          `Field "${field.name}" argument "${name}" is required, but it was not provided.`,
          'GRAPHQL_VALIDATION_FAILED',
          fieldPath,
        );
      }
    }
    const value = def.resolve
      ? def.resolve(parent, args, env, field, fieldPath)
      : (parent as Record<string, unknown> | null)?.[field.name];
    const childType = def.type();
    if (childType === null) {
      if (field.selections) {
        throw new GqlError(
          `Field "${field.name}" must not have a selection since it is a scalar.`,
          'GRAPHQL_VALIDATION_FAILED',
          fieldPath,
        );
      }
      out[key] = value ?? null;
      continue;
    }
    if (!field.selections) {
      throw new GqlError(
        `Field "${field.name}" of type "${childType.name}" must have a selection of subfields.`,
        'GRAPHQL_VALIDATION_FAILED',
        fieldPath,
      );
    }
    const selectionsOfChild = field.selections;
    out[key] = Array.isArray(value)
      ? value.map((item, i) => execute(childType, item, selectionsOfChild, env, [...fieldPath, i]))
      : value === null || value === undefined
        ? null
        : execute(childType, value, selectionsOfChild, env, fieldPath);
  }
  return out;
}

// ---- dates and filters -----------------------------------------------------------------------

const DAY_MS = 86_400_000;
const MAX_DAYS = 366;
const MAX_LIMIT = 10_000;

function day(value: unknown, name: string, path: Path): number {
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) {
    throw new GqlError(
      `filter.${name}: expected a date like 2026-01-31, got ${JSON.stringify(value)}`,
      'GRAPHQL_VALIDATION_FAILED',
      path,
    );
  }
  const d = new Date(value);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

interface Filter {
  readonly from: number;
  readonly to: number;
  readonly equals: Readonly<Record<string, unknown>>;
}

/** Reads `date*`/`datetime*` bounds (AND-ed) and equality filters on the allowed dimensions. */
function readFilter(raw: unknown, dimensions: readonly string[], env: GqlEnv, path: Path): Filter {
  const today = Date.UTC(env.now.getUTCFullYear(), env.now.getUTCMonth(), env.now.getUTCDate());
  let from: number | null = null;
  let to: number | null = null;
  const equals: Record<string, unknown> = {};
  const visit = (value: unknown) => {
    if (value === null || value === undefined) return;
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw new GqlError('filter must be an object', 'GRAPHQL_VALIDATION_FAILED', path);
    }
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      if (key === 'AND' && Array.isArray(v)) {
        v.forEach(visit);
        continue;
      }
      const bound = /^(date|datetime)(?:_(gt|geq|lt|leq))?$/.exec(key);
      if (bound) {
        const d = day(v, key, path);
        const op = bound[2];
        const isDatetime = bound[1] === 'datetime';
        if (op === undefined) {
          from = Math.max(from ?? d, d);
          to = Math.min(to ?? d, d);
        } else if (op === 'geq' || (op === 'gt' && isDatetime)) from = Math.max(from ?? d, d);
        else if (op === 'gt') from = Math.max(from ?? d + DAY_MS, d + DAY_MS);
        else if (op === 'leq' || (op === 'lt' && isDatetime)) to = Math.min(to ?? d, d);
        else to = Math.min(to ?? d - DAY_MS, d - DAY_MS);
        continue;
      }
      if (dimensions.includes(key)) {
        equals[key] = v;
        continue;
      }
      throw new GqlError(`unknown filter field "${key}"`, 'GRAPHQL_VALIDATION_FAILED', path);
    }
  };
  visit(raw);
  const end: number = to ?? today;
  const start: number = from ?? end - 6 * DAY_MS;
  if ((end - start) / DAY_MS + 1 > MAX_DAYS) {
    throw new GqlError(
      `the requested time range is too large: at most ${MAX_DAYS} days`,
      'BAD_REQUEST',
      path,
    );
  }
  return { from: start, to: end, equals };
}

function days(filter: Filter): string[] {
  const out: string[] = [];
  for (let t = filter.from; t <= filter.to; t += DAY_MS) out.push(new Date(t).toISOString().slice(0, 10));
  return out;
}

function readLimit(raw: unknown, path: Path): number {
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1 || raw > MAX_LIMIT) {
    throw new GqlError(`limit must be an integer between 1 and ${MAX_LIMIT}`, 'BAD_REQUEST', path);
  }
  return raw;
}

// ---- grouping ----------------------------------------------------------------------------------

interface Row {
  readonly dimensions: Readonly<Record<string, string>>;
  readonly sum: Readonly<Record<string, number>>;
  readonly max: Readonly<Record<string, number>>;
}

interface Group {
  dimensions: Record<string, string>;
  sum: Record<string, number>;
  uniq: Record<string, number>;
  quantiles: Record<string, number>;
  avg: Record<string, number>;
}

/** Groups by the dimensions the query selects, as the analytics API does (no dimensions: one group). */
function group(rows: readonly Row[], field: FieldSelection, env: GqlEnv): Group[] {
  const selected = new Set<string>();
  for (const f of collectFields(field.selections ?? [], env)) {
    if (f.name === 'dimensions') for (const d of collectFields(f.selections ?? [], env)) selected.add(d.name);
  }
  const groups = new Map<string, Group>();
  for (const row of rows) {
    const dims: Record<string, string> = {};
    for (const name of selected) if (row.dimensions[name] !== undefined) dims[name] = row.dimensions[name];
    const key = JSON.stringify(dims);
    let g = groups.get(key);
    if (!g) {
      g = { dimensions: dims, sum: {}, uniq: { uniques: 0 }, quantiles: {}, avg: { sampleInterval: 1 } };
      groups.set(key, g);
    }
    for (const [k, v] of Object.entries(row.sum)) {
      if (k === 'uniques') g.uniq.uniques = (g.uniq.uniques ?? 0) + v;
      else g.sum[k] = (g.sum[k] ?? 0) + v;
    }
    for (const [k, v] of Object.entries(row.max)) g.quantiles[k] = Math.max(g.quantiles[k] ?? 0, v);
  }
  return [...groups.values()];
}

function order(groups: Group[], raw: unknown, path: Path): Group[] {
  const clauses = raw === undefined || raw === null ? [] : Array.isArray(raw) ? raw : [raw];
  const comparators = clauses.map((clause) => {
    const m = typeof clause === 'string' ? /^(.+)_(ASC|DESC)$/.exec(clause) : null;
    if (!m)
      throw new GqlError(
        `invalid orderBy value ${JSON.stringify(clause)}`,
        'GRAPHQL_VALIDATION_FAILED',
        path,
      );
    const [, field, direction] = m as unknown as [string, string, string];
    const sign = direction === 'DESC' ? -1 : 1;
    const [section, ...rest] = field.split('_');
    const name = rest.join('_');
    const get =
      rest.length === 0
        ? (g: Group) => g.dimensions[field] ?? ''
        : section === 'sum' || section === 'uniq' || section === 'quantiles' || section === 'avg'
          ? (g: Group) => g[section][name] ?? 0
          : null;
    if (!get)
      throw new GqlError(
        `invalid orderBy value ${JSON.stringify(clause)}`,
        'GRAPHQL_VALIDATION_FAILED',
        path,
      );
    return (a: Group, b: Group) => {
      const va = get(a);
      const vb = get(b);
      return va < vb ? -sign : va > vb ? sign : 0;
    };
  });
  return groups.sort((a, b) => {
    for (const compare of comparators) {
      const c = compare(a, b);
      if (c !== 0) return c;
    }
    return 0;
  });
}

// ---- deterministic data ------------------------------------------------------------------------

function zoneRows(zoneId: string, dates: readonly string[]): Row[] {
  return dates.map((date) => {
    const h = stableHash('zone-http', zoneId, date);
    const requests = 1000 + (h % 9000);
    const cachedRequests = Math.floor((requests * ((h >>> 8) % 60)) / 100);
    const bytes = requests * (2000 + ((h >>> 16) % 30000));
    return {
      dimensions: { date },
      sum: {
        requests,
        cachedRequests,
        bytes,
        cachedBytes: Math.floor((bytes * cachedRequests) / requests),
        encryptedRequests: Math.floor(requests * 0.95),
        encryptedBytes: Math.floor(bytes * 0.95),
        pageViews: Math.floor(requests * 0.3),
        threats: (h >>> 4) % 20,
        uniques: Math.floor(requests / 10) + 1,
      },
      max: {},
    };
  });
}

function workerRows(accountId: string, scripts: readonly string[], dates: readonly string[]): Row[] {
  const rows: Row[] = [];
  for (const scriptName of scripts) {
    for (const date of dates) {
      const h = stableHash('workers', accountId, scriptName, date);
      const requests = 100 + (h % 5000);
      const cpuP50 = 500 + ((h >>> 8) % 4000);
      rows.push({
        dimensions: { scriptName, date, status: 'success' },
        sum: {
          requests,
          errors: Math.floor((requests * ((h >>> 12) % 5)) / 100),
          subrequests: requests * ((h >>> 4) % 3),
          duration: Math.round(requests * 0.000125 * 1e6) / 1e6,
          wallTime: requests * (5000 + ((h >>> 16) % 20000)),
          cpuTimeUs: requests * cpuP50,
          responseBodySize: requests * 512,
          clientDisconnects: (h >>> 20) % 3,
        },
        max: {
          cpuTimeP50: cpuP50,
          cpuTimeP99: cpuP50 * 3,
          wallTimeP50: cpuP50 * 4,
          wallTimeP99: cpuP50 * 12,
        },
      });
    }
  }
  return rows;
}

// ---- schema ------------------------------------------------------------------------------------

const scalar = () => null;
function scalars(name: string, names: readonly string[]): GqlType {
  return { name, fields: Object.fromEntries(names.map((n) => [n, { type: scalar }])) };
}

const HTTP_GROUP: GqlType = {
  name: 'ZoneHttpRequests1dGroups',
  fields: {
    dimensions: { type: () => scalars('ZoneHttpRequests1dGroupsDimensions', ['date']) },
    sum: {
      type: () =>
        scalars('ZoneHttpRequests1dGroupsSum', [
          'requests',
          'bytes',
          'cachedRequests',
          'cachedBytes',
          'encryptedRequests',
          'encryptedBytes',
          'pageViews',
          'threats',
        ]),
    },
    uniq: { type: () => scalars('ZoneHttpRequests1dGroupsUniq', ['uniques']) },
  },
};

const WORKERS_GROUP: GqlType = {
  name: 'AccountWorkersInvocationsAdaptive',
  fields: {
    dimensions: {
      type: () => scalars('AccountWorkersInvocationsAdaptiveDimensions', ['scriptName', 'date', 'status']),
    },
    sum: {
      type: () =>
        scalars('AccountWorkersInvocationsAdaptiveSum', [
          'requests',
          'errors',
          'subrequests',
          'duration',
          'wallTime',
          'cpuTimeUs',
          'responseBodySize',
          'clientDisconnects',
        ]),
    },
    quantiles: {
      type: () =>
        scalars('AccountWorkersInvocationsAdaptiveQuantiles', [
          'cpuTimeP50',
          'cpuTimeP99',
          'wallTimeP50',
          'wallTimeP99',
        ]),
    },
    avg: { type: () => scalars('AccountWorkersInvocationsAdaptiveAvg', ['sampleInterval']) },
  },
};

const NODE_ARGS = ['limit', 'filter', 'orderBy'] as const;

const ZONE: GqlType = {
  name: 'zone',
  fields: {
    zoneTag: { type: scalar, resolve: (parent) => (parent as { id: string }).id },
    httpRequests1dGroups: {
      type: () => HTTP_GROUP,
      args: NODE_ARGS,
      required: ['limit'],
      resolve: (parent, args, env, field, path) => {
        const limit = readLimit(args.limit, path);
        const filter = readFilter(args.filter, ['date'], env, path);
        const groups = group(zoneRows((parent as { id: string }).id, days(filter)), field, env);
        return order(groups, args.orderBy, path).slice(0, limit);
      },
    },
  },
};

const ACCOUNT: GqlType = {
  name: 'account',
  fields: {
    accountTag: { type: scalar, resolve: (parent) => (parent as { id: string }).id },
    workersInvocationsAdaptive: {
      type: () => WORKERS_GROUP,
      args: NODE_ARGS,
      required: ['limit'],
      resolve: (parent, args, env, field, path) => {
        const accountId = (parent as { id: string }).id;
        const limit = readLimit(args.limit, path);
        const filter = readFilter(args.filter, ['scriptName', 'status'], env, path);
        const names = [...(env.state.workerScripts.get(accountId)?.keys() ?? [])].filter(
          (n) => filter.equals.scriptName === undefined || filter.equals.scriptName === n,
        );
        const rows = workerRows(accountId, names, days(filter)).filter(
          (r) => filter.equals.status === undefined || filter.equals.status === r.dimensions.status,
        );
        return order(group(rows, field, env), args.orderBy, path).slice(0, limit);
      },
    },
  },
};

function tags(filter: unknown, single: string, path: Path): string[] | null {
  if (filter === undefined || filter === null) return null;
  if (typeof filter !== 'object' || Array.isArray(filter)) {
    throw new GqlError('filter must be an object', 'GRAPHQL_VALIDATION_FAILED', path);
  }
  const f = filter as Record<string, unknown>;
  for (const key of Object.keys(f)) {
    if (key !== single && key !== `${single}_in`) {
      throw new GqlError(`unknown filter field "${key}"`, 'GRAPHQL_VALIDATION_FAILED', path);
    }
  }
  const out: string[] = [];
  if (typeof f[single] === 'string') out.push(f[single]);
  if (Array.isArray(f[`${single}_in`]))
    out.push(...(f[`${single}_in`] as unknown[]).filter((t): t is string => typeof t === 'string'));
  return out;
}

const VIEWER: GqlType = {
  name: 'viewer',
  fields: {
    budget: { type: scalar, resolve: () => 100_000_000 },
    zones: {
      type: () => ZONE,
      args: ['filter', 'limit'],
      resolve: (_parent, args, env, _field, path) => {
        const wanted = tags(args.filter, 'zoneTag', path);
        const candidates = wanted
          ? wanted.map((t) => env.state.zones.get(t) ?? t)
          : [...env.state.zones.values()];
        const zones = [];
        for (const zone of candidates) {
          const allowed =
            typeof zone !== 'string' && canOnZone(env.state, env.principal, zone, env.permissions);
          if (allowed) zones.push(zone);
          else if (wanted) throw new GqlError('not authorized for that zone', 'authz', path);
        }
        return typeof args.limit === 'number' ? zones.slice(0, args.limit) : zones;
      },
    },
    accounts: {
      type: () => ACCOUNT,
      args: ['filter', 'limit'],
      resolve: (_parent, args, env, _field, path) => {
        const wanted = tags(args.filter, 'accountTag', path);
        const candidates = wanted
          ? wanted.map((t) => env.state.accounts.get(t) ?? t)
          : [...env.state.accounts.values()];
        const accounts = [];
        for (const account of candidates) {
          const allowed =
            typeof account !== 'string' && canOnAccount(env.principal, account, env.permissions);
          if (allowed) accounts.push(account);
          else if (wanted) throw new GqlError('not authorized for that account', 'authz', path);
        }
        return typeof args.limit === 'number' ? accounts.slice(0, args.limit) : accounts;
      },
    },
  },
};

const QUERY: GqlType = { name: 'Query', fields: { viewer: { type: () => VIEWER, resolve: () => ({}) } } };

export function executeQuery(selections: readonly GqlSelection[], env: GqlEnv): Record<string, unknown> {
  return execute(QUERY, {}, selections, env, []);
}
