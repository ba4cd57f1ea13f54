/**
 * CPU between tenants. The kernel shares the cores between threads, not tenants, so a tenant
 * running many CPU-bound executions (many threads in its execute children) would take most of
 * the cores from another tenant's one execution. Execute children serve one tenant at a time,
 * so a tenant's share can be steered through its children's niceness, which needs no privilege
 * to raise: every half second the pool reads the CPU each tenant's children used, and while
 * two tenants or more want CPU, one that used clearly more than an equal share of what they
 * used goes down a step or two (each step about 20 % less weight per thread), and one that used
 * clearly less comes back a step towards the base. Alone, a tenant comes back a step each time.
 * A tenant whose calls wait for a child wants CPU too, whatever it used: the child that is
 * starting for it needs the cores a flooding tenant holds.
 *
 * The kernel stays work-conserving: a tenant steered down still gets every cycle nobody else
 * wants, so this costs a busy tenant nothing while it is alone.
 */

/** What one tenant's execute children used over the last interval, and their niceness. */
export interface TenantCpu {
  readonly tenant: string;
  /** Cores' worth of CPU its children used (1 = one core all the time). */
  readonly usedCores: number;
  readonly nice: number;
  /** Its calls wait for an execute child (none of its own could take them). */
  readonly waiting?: boolean;
}

export interface FairnessRules {
  /** The children's niceness when nobody is steered. */
  readonly baseNice: number;
  /** The lowest priority a tenant is steered to (at most 19). */
  readonly maxNice: number;
}

/** A tenant below this is not competing for CPU. */
const WANTS_CPU_CORES = 0.1;
/** Above share × this, a tenant goes down a step; above share × `STEEP`, two. */
const ABOVE = 1.2;
const STEEP = 1.4;
/** Below share × this, a steered tenant comes back a step. */
const BELOW = 0.8;

/** The niceness each tenant's children should have next; tenants left out stay as they are. */
export function steerNiceness(tenants: readonly TenantCpu[], rules: FairnessRules): Map<string, number> {
  const next = new Map<string, number>();
  const competing = tenants.filter((t) => t.usedCores >= WANTS_CPU_CORES || t.waiting);
  const clamp = (nice: number) => Math.min(Math.max(nice, rules.baseNice), rules.maxNice);
  if (competing.length < 2) {
    for (const t of tenants) if (t.nice > rules.baseNice) next.set(t.tenant, clamp(t.nice - 1));
    return next;
  }
  const share = competing.reduce((sum, t) => sum + t.usedCores, 0) / competing.length;
  for (const t of tenants) {
    let nice = t.nice;
    if (t.usedCores > share * STEEP) nice += 2;
    else if (t.usedCores > share * ABOVE) nice += 1;
    else if (t.usedCores < share * BELOW) nice -= 1;
    nice = clamp(nice);
    if (nice !== t.nice) next.set(t.tenant, nice);
  }
  return next;
}
