export {
  ERROR_CODES,
  WardenError,
  assertNever,
  invalidRequest,
  isWardenError,
  notFound,
  unavailable,
} from './errors.ts';
export type { ErrorCode, ErrorDetails } from './errors.ts';
export { hasControlCharacters, hasPrefix, newId, randomString, storableText } from './ids.ts';
export type { IdPrefix } from './ids.ts';
export { ManualClock, systemClock } from './clock.ts';
export { procStatFields } from './proc-stat.ts';
export type { Clock } from './clock.ts';
export { SECRET_FIELD_NAMES, noopLogger } from './logger.ts';
export type { Logger } from './logger.ts';
