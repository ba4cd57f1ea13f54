/**
 * Which execute child takes a tenant's execution. A child serves one tenant at a time, so
 * whatever a tenant's code does to its process (V8 aborting it on an allocation isolated-vm
 * cannot stop, a kill at a deadline) fails no other tenant's call.
 */

/** What placement needs to know of an execute child that could take calls now. */
export interface Slot {
  /** The tenant it serves; null for a spare. */
  readonly tenant: string | null;
  readonly executions: number;
  /** Runs a retried call alone. */
  readonly exclusive: boolean;
}

export interface PlacementRules {
  /** Children one tenant spreads its calls over before stacking them (the cores). */
  readonly spread: number;
  readonly maxExecutionsPerChild: number;
}

/**
 * The child for an execution of `tenant`, or undefined when it has to wait. A `solo` call (a
 * retry after a crash) gets a child of its own: an idle one of its tenant, or a spare while the
 * tenant holds fewer than `spread` children. Other calls prefer an idle child of their tenant,
 * then a spare while the tenant holds fewer than `spread` children, then the least loaded child
 * of their tenant. Children running a retry alone count as held: a tenant whose calls keep
 * crashing their children cannot spread over more children by its retries.
 */
export function placeExecution<S extends Slot>(
  slots: Iterable<S>,
  tenant: string,
  solo: boolean,
  rules: PlacementRules,
): S | undefined {
  let own: S | undefined;
  let idleOwn: S | undefined;
  let spare: S | undefined;
  let held = 0;
  for (const slot of slots) {
    if (slot.tenant === null) {
      spare ??= slot;
      continue;
    }
    if (slot.tenant !== tenant) continue;
    held++;
    if (slot.exclusive) continue;
    if (slot.executions === 0) idleOwn ??= slot;
    if (slot.executions < rules.maxExecutionsPerChild && (!own || slot.executions < own.executions)) {
      own = slot;
    }
  }
  if (solo) return idleOwn ?? (held < rules.spread ? spare : undefined);
  if (idleOwn) return idleOwn;
  if (spare && held < rules.spread) return spare;
  return own;
}
