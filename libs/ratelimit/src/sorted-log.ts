/**
 * The in-process twin of a Redis sorted set of request times: ids with scores (ms), kept sorted
 * by score. Small by construction (at most a window's capacity), so a sorted array with binary
 * search is enough.
 */
export class SortedLog {
  readonly #entries: Array<{ id: string; score: number; admittedAt: number }> = [];
  readonly #scores = new Map<string, number>();

  get size(): number {
    return this.#entries.length;
  }

  /** Index of the first entry with a score above `score` (`inclusive`: at or above). */
  #bound(score: number, inclusive: boolean): number {
    let lo = 0;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const s = this.#entries[mid]!.score;
      if (inclusive ? s < score : s <= score) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Drops every entry with a score at or below `upTo`. */
  trim(upTo: number): void {
    const n = this.#bound(upTo, false);
    for (const { id } of this.#entries.splice(0, n)) this.#scores.delete(id);
  }

  /** The score of the entry at `index` in score order (0 = lowest). */
  scoreAt(index: number): number | undefined {
    return this.#entries[index]?.score;
  }

  /** Entries with a score at or above `score`. */
  countFrom(score: number): number {
    return this.#entries.length - this.#bound(score, true);
  }

  /** Entries with a score above `score`. */
  countAbove(score: number): number {
    return this.#entries.length - this.#bound(score, false);
  }

  scoreOf(id: string): number | undefined {
    return this.#scores.get(id);
  }

  /** Entries with a score above `score`, lowest first. */
  *above(
    score: number,
  ): Iterable<{ readonly id: string; readonly score: number; readonly admittedAt: number }> {
    for (let i = this.#bound(score, false); i < this.#entries.length; i++) yield this.#entries[i]!;
  }

  /** Adds (or moves) an entry; `admittedAt` is kept from its first addition. */
  add(id: string, score: number, admittedAt = score): void {
    const previous = this.#scores.has(id) ? this.#entries.find((e) => e.id === id)?.admittedAt : undefined;
    this.remove(id);
    // Equal scores keep insertion order; only the scores matter to the window.
    this.#entries.splice(this.#bound(score, false), 0, { id, score, admittedAt: previous ?? admittedAt });
    this.#scores.set(id, score);
  }

  remove(id: string): void {
    const score = this.#scores.get(id);
    if (score === undefined) return;
    const from = this.#bound(score, true);
    const at = this.#entries.findIndex((e, i) => i >= from && e.id === id);
    this.#entries.splice(at, 1);
    this.#scores.delete(id);
  }
}
