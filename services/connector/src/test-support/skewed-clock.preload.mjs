// Test support only: `node --import` this file to run a process whose wall clock is off by
// WARDEN_TEST_CLOCK_SKEW_MS, as on a replica whose host clock drifted. Date.now() and
// `new Date()` move; monotonic time (performance.now) does not, as on a real host.
const skew = Number(process.env.WARDEN_TEST_CLOCK_SKEW_MS ?? 0);
const RealDate = Date;
const realNow = RealDate.now.bind(RealDate);
class SkewedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(realNow() + skew);
    else super(...args);
  }
  static now() {
    return realNow() + skew;
  }
}
globalThis.Date = SkewedDate;
