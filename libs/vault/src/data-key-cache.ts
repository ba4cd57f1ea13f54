import type { Clock } from '@warden/core';
import { systemClock } from '@warden/core';

export interface DataKeyCacheOptions {
  /** Most unwrapped data keys held at once (LRU beyond that). 0 disables the cache. */
  readonly maxEntries: number;
  readonly ttlMs: number;
  readonly clock?: Clock;
}

interface Entry {
  readonly key: Buffer;
  readonly expiresAt: number;
}

/**
 * A small LRU of unwrapped data keys, so hot paths do not call KMS per request.
 * Keys are zeroed when evicted or expired. Only successful unwraps are ever stored.
 */
export class DataKeyCache {
  readonly #entries = new Map<string, Entry>();
  readonly #options: DataKeyCacheOptions;
  readonly #clock: Clock;
  hits = 0;
  misses = 0;

  constructor(options: DataKeyCacheOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  get(id: string): Buffer | undefined {
    const entry = this.#entries.get(id);
    if (!entry) {
      this.misses++;
      return undefined;
    }
    this.#entries.delete(id);
    if (entry.expiresAt <= this.#clock.now().getTime()) {
      entry.key.fill(0);
      this.misses++;
      return undefined;
    }
    this.#entries.set(id, entry);
    this.hits++;
    return entry.key;
  }

  /** Stores a private copy; the caller keeps ownership of `key`. */
  set(id: string, key: Buffer): void {
    if (this.#options.maxEntries <= 0 || this.#options.ttlMs <= 0) return;
    this.delete(id);
    this.#entries.set(id, {
      key: Buffer.from(key),
      expiresAt: this.#clock.now().getTime() + this.#options.ttlMs,
    });
    while (this.#entries.size > this.#options.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.delete(oldest);
    }
  }

  delete(id: string): void {
    const entry = this.#entries.get(id);
    if (entry) {
      entry.key.fill(0);
      this.#entries.delete(id);
    }
  }

  clear(): void {
    for (const entry of this.#entries.values()) entry.key.fill(0);
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
