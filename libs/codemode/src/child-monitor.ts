/**
 * Watches a sandbox child from its own event loop, which stays free while isolates run on
 * their own threads.
 *
 * Memory: isolated-vm's heap limit does not contain everything. A builtin that never polls for
 * interrupts (`new Array(2**30).fill(0)` fills a dictionary in C++) keeps allocating after
 * isolated-vm has asked it to stop, until V8 aborts the whole process 10–19 s later; resizable
 * `ArrayBuffer`s are committed outside isolated-vm's allocator and are not counted at all. So
 * the child compares its resident memory with what its running calls may legitimately use and
 * reports when it is over: at once above a hard ceiling, or when it stays above a soft one.
 *
 * Quiet: an isolate's code can outlive its call (work scheduled by a promise that settles after
 * the result), and a builtin stuck like the one above keeps its thread busy even after the
 * isolate is disposed. Before the child may serve another tenant it must have run no call and
 * used (almost) no CPU outside its main thread for two consecutive intervals.
 */

const MB = 1024 * 1024;

export interface MemoryReport {
  readonly rssMb: number;
  /** The ceiling it crossed. */
  readonly allowedMb: number;
  /** The calls running code when it was crossed (a build for the process itself is none of them). */
  readonly calls: number;
}

/** What a sandbox runs under the memory watch. */
export interface MemoryWatch {
  /** Runs one call's code, whose isolate has this heap limit. */
  call<T>(memoryMb: number, run: () => Promise<T>): Promise<T>;
  /**
   * Builds something the process keeps between calls (a search child's warm context on the
   * spec) in an isolate with this heap limit. Its memory is the build's while it runs, no
   * call's, and the process's idle memory afterwards.
   */
  build<T>(heapMb: number, run: () => Promise<T>): Promise<T>;
}

export interface ChildMonitorOptions {
  readonly onMemoryExceeded: (report: MemoryReport) => void;
  readonly intervalMs?: number;
  /** How long memory may stay above the soft ceiling before it counts as exceeded. */
  readonly sustainMs?: number;
  /** Readings, replaceable in tests: resident set size in bytes, CPU µs of all threads but this one. */
  readonly readRss?: () => number;
  readonly readOtherThreadsCpuUs?: () => number;
}

/**
 * What one call may occupy above the child's idle memory. The soft allowance is what a call
 * may hold for long: a heap kept at its limit measured 1.05× the limit resident, and isolated-vm
 * stops a call that goes over within a fraction of a second. The hard one covers the short peaks
 * seen while it does (a double array copied as it grew reached 3.6× the limit).
 */
function softAllowanceMb(memoryMb: number): number {
  return 1.5 * memoryMb + 64;
}
function hardAllowanceMb(memoryMb: number): number {
  return 4 * memoryMb + 64;
}
const HARD_HEADROOM_MB = 128;
/** CPU outside the main thread, per interval, below which the child counts as quiet (4 %). */
const QUIET_CPU_SHARE = 0.04;

function otherThreadsCpuUs(): number {
  const all = process.cpuUsage();
  const main = process.threadCpuUsage();
  return all.user + all.system - main.user - main.system;
}

export class ChildMonitor implements MemoryWatch {
  readonly #options: ChildMonitorOptions;
  readonly #intervalMs: number;
  readonly #sustainMs: number;
  readonly #readRss: () => number;
  readonly #readCpu: () => number;
  readonly #timer: NodeJS.Timeout;
  /** Calls and builds running now; `#builds` of them are builds. */
  #calls = 0;
  #builds = 0;
  #softMb = 0;
  #hardMb = 0;
  /** Heap limit of the call that ended last, until an idle interval takes a new baseline. */
  #lastEndedMb = 0;
  /** Resident memory at the last moment no call ran. */
  #idleRssMb: number;
  #overSince: number | null = null;
  #lastCpuUs: number;
  #quietTicks = 0;
  #quietWaiters: Array<() => void> = [];
  #exceeded = false;

  constructor(options: ChildMonitorOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? 100;
    this.#sustainMs = options.sustainMs ?? 1_000;
    this.#readRss = options.readRss ?? (() => process.memoryUsage.rss());
    this.#readCpu = options.readOtherThreadsCpuUs ?? otherThreadsCpuUs;
    this.#idleRssMb = this.#readRss() / MB;
    this.#lastCpuUs = this.#readCpu();
    this.#timer = setInterval(() => this.tick(), this.#intervalMs);
    this.#timer.unref();
  }

  /** A call with this heap limit starts. */
  begin(memoryMb: number): void {
    this.#calls++;
    this.#softMb += softAllowanceMb(memoryMb);
    this.#hardMb += hardAllowanceMb(memoryMb);
    this.#quietTicks = 0;
  }

  /** A call started with `begin(memoryMb)` ended. */
  end(memoryMb: number): void {
    this.#calls--;
    this.#softMb -= softAllowanceMb(memoryMb);
    this.#hardMb -= hardAllowanceMb(memoryMb);
    this.#lastEndedMb = memoryMb;
    this.#quietTicks = 0;
  }

  async call<T>(memoryMb: number, run: () => Promise<T>): Promise<T> {
    this.begin(memoryMb);
    try {
      return await run();
    } finally {
      this.end(memoryMb);
    }
  }

  async build<T>(heapMb: number, run: () => Promise<T>): Promise<T> {
    this.#builds++;
    this.begin(heapMb);
    let built = false;
    try {
      const result = await run();
      built = true;
      return result;
    } finally {
      this.end(heapMb);
      this.#builds--;
      if (built) this.#rebase(heapMb);
    }
  }

  /**
   * Takes the present memory as the idle baseline, after the process took on memory it keeps
   * between calls (a search child's warm context on the spec): under steady load there may be
   * no idle interval to measure it in. It rises by no more than the build may hold: memory a
   * stopped call's thread still grows (a rebuild follows a stopped search) stays counted.
   */
  #rebase(heapMb: number): void {
    this.#idleRssMb = Math.min(this.#readRss() / MB, this.#idleRssMb + softAllowanceMb(heapMb));
    this.#overSince = null;
  }

  /** Resolves once no call runs and no isolate thread has been working for two intervals. */
  whenQuiet(): Promise<void> {
    if (this.#quiet()) return Promise.resolve();
    return new Promise((resolve) => this.#quietWaiters.push(resolve));
  }

  close(): void {
    clearInterval(this.#timer);
  }

  /** One reading; runs on the interval (public for tests that drive the clock). */
  tick(): void {
    const cpuUs = this.#readCpu();
    const quietTick = cpuUs - this.#lastCpuUs < this.#intervalMs * 1000 * QUIET_CPU_SHARE;
    this.#lastCpuUs = cpuUs;
    const rssMb = this.#readRss() / MB;
    if (this.#calls === 0) {
      this.#quietTicks = quietTick ? this.#quietTicks + 1 : 0;
      if (this.#quiet()) {
        for (const resolve of this.#quietWaiters.splice(0)) resolve();
      }
      // The baseline follows an idle process only while it is quiet: memory a leftover
      // isolate thread keeps growing after its call must still count as over.
      if (quietTick) {
        this.#idleRssMb = rssMb;
        this.#lastEndedMb = 0;
        this.#overSince = null;
        return;
      }
    } else {
      this.#quietTicks = 0;
    }
    // Between two calls of a steady stream no interval is idle, so the baseline is old and the
    // call that just ended may still hold its isolate (disposed after its result, its memory
    // returned later): with no call running, that call's allowance still applies. Without it a
    // child serving calls back to back was stopped for a few MB after a second.
    const lingering = this.#calls === 0 && this.#lastEndedMb > 0;
    const hard =
      this.#idleRssMb + (lingering ? hardAllowanceMb(this.#lastEndedMb) : this.#hardMb) + HARD_HEADROOM_MB;
    const soft = this.#idleRssMb + (lingering ? softAllowanceMb(this.#lastEndedMb) : this.#softMb);
    const now = performance.now();
    if (rssMb > hard) {
      this.#report(rssMb, hard);
    } else if (rssMb > soft) {
      this.#overSince ??= now;
      if (now - this.#overSince >= this.#sustainMs) this.#report(rssMb, soft);
    } else {
      this.#overSince = null;
    }
  }

  #quiet(): boolean {
    return this.#calls === 0 && this.#quietTicks >= 2;
  }

  #report(rssMb: number, allowedMb: number): void {
    if (this.#exceeded) return;
    this.#exceeded = true;
    this.#options.onMemoryExceeded({
      rssMb: Math.round(rssMb),
      allowedMb: Math.round(allowedMb),
      calls: this.#calls - this.#builds,
    });
  }
}
