/** The subset of pino's API the libs use, so they never depend on a logging library. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export const noopLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => noopLogger,
};

/**
 * Field and header names that may carry a credential anywhere in Warden. The service's
 * logger redacts them at every depth; keep this list the single source of truth.
 */
export const SECRET_FIELD_NAMES = [
  'authorization',
  'api_token',
  'apiToken',
  'api_key',
  'apiKey',
  'token',
  'secret',
  'password',
  'credential',
  'credentials',
  'x-auth-key',
  'x-auth-email',
  'cookie',
  'set-cookie',
  'plaintext',
  'Plaintext',
  'dataKey',
] as const;
