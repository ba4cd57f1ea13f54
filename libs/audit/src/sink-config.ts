import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { WardenError, hasControlCharacters } from '@warden/core';
import { isPrivateHost } from './network-guard.ts';

export const SINK_TYPES = ['webhook', 'splunk_hec', 'syslog'] as const;

export type SinkType = (typeof SINK_TYPES)[number];

export interface WebhookSinkConfig {
  readonly type: 'webhook';
  readonly url: string;
  /** HMAC-SHA256 key for `x-warden-signature`. */
  readonly secret: string;
}

export interface SplunkHecSinkConfig {
  readonly type: 'splunk_hec';
  /** The HEC base URL (`https://splunk.example:8088`); `/services/collector/event` is appended. */
  readonly url: string;
  readonly token: string;
  readonly index?: string;
}

export interface SyslogSinkConfig {
  readonly type: 'syslog';
  readonly host: string;
  readonly port: number;
  /** Plain TCP (RFC 6587) or TLS (RFC 5425); both with octet-counting framing. */
  readonly transport: 'tcp' | 'tls';
  /** PEM CA bundle to trust instead of the system roots (TLS only). */
  readonly ca?: string;
  /** Name to verify the receiver's certificate against, when it differs from `host` (TLS only). */
  readonly server_name?: string;
  /** RFC 5424 facility, 0–23; default 13 (log audit). */
  readonly facility?: number;
  /** RFC 5424 APP-NAME; default `warden`. */
  readonly app_name?: string;
  /** MSG body: the event as JSON (default) or as a CEF line. */
  readonly message_format?: 'json' | 'cef';
}

export type SinkConfig = WebhookSinkConfig | SplunkHecSinkConfig | SyslogSinkConfig;

export interface SinkValidationOptions {
  /** Accept `http://` URLs. For tests and loopback demos only: audit events would cross the wire in clear. */
  readonly allowInsecureHttp?: boolean;
  /** Accept loopback, private and link-local destinations. For tests and single-host setups only. */
  readonly allowPrivateNetwork?: boolean;
  /** Prefix for error field paths, e.g. `config` gives `config.url`. */
  readonly fieldPrefix?: string;
}

export interface SinkFieldError {
  readonly field: string;
  readonly message: string;
}

const FIELDS: Record<SinkType, readonly string[]> = {
  webhook: ['type', 'url', 'secret'],
  splunk_hec: ['type', 'url', 'token', 'index'],
  syslog: [
    'type',
    'host',
    'port',
    'transport',
    'ca',
    'server_name',
    'facility',
    'app_name',
    'message_format',
  ],
};

const HOSTNAME =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;
const SPLUNK_INDEX = /^[a-z0-9][a-z0-9_-]{0,79}$/;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

/** Records a problem; returns undefined so a checker can `return fail(...)`. */
type Check = (field: string, message: string) => undefined;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Messages describe what is wrong, never the value: it may be a secret or carry one. */
function checkUrl(value: unknown, fail: Check, options: SinkValidationOptions): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return fail('url', 'is required');
  if (value.length > 2048) return fail('url', 'must be at most 2048 characters');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return fail('url', 'must be an absolute URL');
  }
  const insecure = url.protocol === 'http:' && options.allowInsecureHttp === true;
  if (url.protocol !== 'https:' && !insecure) return fail('url', 'must use https');
  if (url.username !== '' || url.password !== '') {
    return fail('url', 'must not contain credentials; use the secret or token field');
  }
  if (options.allowPrivateNetwork !== true && isPrivateHost(url.hostname)) {
    return fail('url', 'must not point to a loopback, private or link-local address');
  }
  return value;
}

function checkSecret(field: string, value: unknown, fail: Check, min: number): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return fail(field, 'is required');
  if (value.length < min || value.length > 512) {
    return fail(field, `must be between ${min} and 512 characters`);
  }
  if (hasControlCharacters(value) || /\s/.test(value)) {
    return fail(field, 'must not contain whitespace or control characters');
  }
  return value;
}

function checkWebhook(
  input: Record<string, unknown>,
  fail: Check,
  options: SinkValidationOptions,
): SinkConfig {
  return {
    type: 'webhook',
    url: checkUrl(input.url, fail, options) ?? '',
    // Long enough that an offline guess of the HMAC key is out of reach.
    secret: checkSecret('secret', input.secret, fail, 16) ?? '',
  };
}

function checkSplunk(
  input: Record<string, unknown>,
  fail: Check,
  options: SinkValidationOptions,
): SinkConfig {
  const config: { -readonly [K in keyof SplunkHecSinkConfig]: SplunkHecSinkConfig[K] } = {
    type: 'splunk_hec',
    url: checkUrl(input.url, fail, options) ?? '',
    token: checkSecret('token', input.token, fail, 1) ?? '',
  };
  if (input.index !== undefined) {
    if (typeof input.index !== 'string' || !SPLUNK_INDEX.test(input.index)) {
      fail('index', 'must be a Splunk index name (lowercase letters, digits, "_" and "-")');
    } else {
      config.index = input.index;
    }
  }
  return config;
}

function isHost(value: string): boolean {
  return isIP(value) !== 0 || HOSTNAME.test(value);
}

function checkSyslog(
  input: Record<string, unknown>,
  fail: Check,
  options: SinkValidationOptions,
): SinkConfig {
  const { host, port, transport, ca, server_name, facility, app_name, message_format } = input;
  const config: { -readonly [K in keyof SyslogSinkConfig]: SyslogSinkConfig[K] } = {
    type: 'syslog',
    host: '',
    port: 0,
    transport: 'tls',
  };
  if (typeof host !== 'string' || host.length === 0) fail('host', 'is required');
  else if (!isHost(host)) fail('host', 'must be a hostname or an IP address');
  else if (options.allowPrivateNetwork !== true && isPrivateHost(host)) {
    fail('host', 'must not be a loopback, private or link-local address');
  } else config.host = host;

  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    fail('port', 'must be an integer between 1 and 65535');
  } else config.port = port;

  if (transport !== 'tcp' && transport !== 'tls') fail('transport', 'must be "tcp" or "tls"');
  else config.transport = transport;

  if (ca !== undefined) {
    if (transport !== 'tls') fail('ca', 'applies only to transport "tls"');
    else if (typeof ca !== 'string' || ca.length > 64 * 1024 || !ca.includes('-----BEGIN CERTIFICATE-----')) {
      fail('ca', 'must be PEM certificates of at most 64 KiB');
    } else {
      try {
        new X509Certificate(ca);
        config.ca = ca;
      } catch {
        fail('ca', 'is not a valid PEM certificate');
      }
    }
  }
  if (server_name !== undefined) {
    if (transport !== 'tls') fail('server_name', 'applies only to transport "tls"');
    else if (typeof server_name !== 'string' || !HOSTNAME.test(server_name))
      fail('server_name', 'must be a hostname');
    else config.server_name = server_name;
  }
  if (facility !== undefined) {
    if (typeof facility !== 'number' || !Number.isInteger(facility) || facility < 0 || facility > 23) {
      fail('facility', 'must be an integer between 0 and 23');
    } else config.facility = facility;
  }
  if (app_name !== undefined) {
    // RFC 5424 APP-NAME: 1*48PRINTUSASCII.
    if (typeof app_name !== 'string' || app_name.length > 48 || !PRINTABLE_ASCII.test(app_name)) {
      fail('app_name', 'must be 1 to 48 printable ASCII characters without spaces');
    } else config.app_name = app_name;
  }
  if (message_format !== undefined) {
    if (message_format !== 'json' && message_format !== 'cef')
      fail('message_format', 'must be "json" or "cef"');
    else config.message_format = message_format;
  }
  return config;
}

/**
 * Validates a sink configuration a tenant sent through the API and returns a clean copy with
 * only known fields. Throws `invalid_request` naming the first bad field in `details.field`,
 * with every problem in `details.errors`. Secret values never appear in the error.
 */
export function parseSinkConfig(input: unknown, options: SinkValidationOptions = {}): SinkConfig {
  const errors: SinkFieldError[] = [];
  const path = (field: string): string => (options.fieldPrefix ? `${options.fieldPrefix}.${field}` : field);
  const fail: Check = (field, message) => {
    errors.push({ field: path(field), message });
    return undefined;
  };
  let config: SinkConfig | undefined;
  if (!isRecord(input)) {
    errors.push({ field: options.fieldPrefix ?? 'type', message: 'must be an object' });
  } else if (typeof input.type !== 'string' || !(SINK_TYPES as readonly string[]).includes(input.type)) {
    fail('type', `must be one of ${SINK_TYPES.join(', ')}`);
  } else {
    const type = input.type as SinkType;
    for (const key of Object.keys(input)) {
      if (!FIELDS[type].includes(key))
        fail(key.length > 64 ? `${key.slice(0, 64)}...` : key, 'unknown field');
    }
    if (type === 'webhook') config = checkWebhook(input, fail, options);
    else if (type === 'splunk_hec') config = checkSplunk(input, fail, options);
    else config = checkSyslog(input, fail, options);
  }
  const [first] = errors;
  if (config && !first) return config;
  const reported = first ?? { field: path('type'), message: 'is invalid' };
  throw new WardenError('invalid_request', `${reported.field}: ${reported.message}`, {
    field: reported.field,
    errors,
  });
}
