import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isWardenError } from '@warden/core';
import { describe, expect, it } from 'vitest';
import { parseSinkConfig } from './sink-config.ts';
import type { SinkValidationOptions } from './sink-config.ts';
import { makeCertificates } from './test-support/rsyslog-server.ts';

const SECRET = 'whsec_0123456789abcdef0123456789';
const TOKEN = '11111111-2222-3333-4444-555555555555';

function failure(
  input: unknown,
  options?: SinkValidationOptions,
): { field: string; message: string; all: unknown } {
  try {
    parseSinkConfig(input, options);
  } catch (error) {
    if (!isWardenError(error)) throw error;
    expect(error.code).toBe('invalid_request');
    return { field: String(error.details.field), message: error.message, all: error.details.errors };
  }
  throw new Error('expected a validation error');
}

describe('sink configuration', () => {
  it('accepts the three sink types and drops nothing it knows', () => {
    expect(
      parseSinkConfig({ type: 'webhook', url: 'https://siem.example/hook?x=1', secret: SECRET }),
    ).toEqual({
      type: 'webhook',
      url: 'https://siem.example/hook?x=1',
      secret: SECRET,
    });
    expect(
      parseSinkConfig({
        type: 'splunk_hec',
        url: 'https://splunk.example:8088',
        token: TOKEN,
        index: 'warden',
      }),
    ).toEqual({ type: 'splunk_hec', url: 'https://splunk.example:8088', token: TOKEN, index: 'warden' });
    expect(
      parseSinkConfig({
        type: 'syslog',
        host: 'logs.example.com',
        port: 6514,
        transport: 'tls',
        server_name: 'logs.example.com',
        facility: 16,
        app_name: 'warden-prod',
        message_format: 'cef',
      }),
    ).toEqual({
      type: 'syslog',
      host: 'logs.example.com',
      port: 6514,
      transport: 'tls',
      server_name: 'logs.example.com',
      facility: 16,
      app_name: 'warden-prod',
      message_format: 'cef',
    });
    expect(parseSinkConfig({ type: 'syslog', host: '2001:db8::10', port: 514, transport: 'tcp' })).toEqual({
      type: 'syslog',
      host: '2001:db8::10',
      port: 514,
      transport: 'tcp',
    });
  });

  it.each([
    [null, 'type', 'must be an object'],
    [{ type: 'email' }, 'type', 'must be one of webhook, splunk_hec, syslog'],
    [{ type: 'webhook', secret: SECRET }, 'url', 'is required'],
    [{ type: 'webhook', url: 'not a url', secret: SECRET }, 'url', 'must be an absolute URL'],
    [{ type: 'webhook', url: 'http://siem.example/h', secret: SECRET }, 'url', 'must use https'],
    [{ type: 'webhook', url: 'ftp://siem.example/h', secret: SECRET }, 'url', 'must use https'],
    [
      { type: 'webhook', url: 'https://u:p@siem.example/h', secret: SECRET },
      'url',
      'must not contain credentials',
    ],
    [{ type: 'webhook', url: 'https://127.0.0.1/h', secret: SECRET }, 'url', 'must not point to a loopback'],
    [{ type: 'webhook', url: 'https://[::1]/h', secret: SECRET }, 'url', 'must not point to a loopback'],
    [{ type: 'webhook', url: 'https://169.254.169.254/latest', secret: SECRET }, 'url', 'must not point'],
    [{ type: 'webhook', url: 'https://db.localhost/h', secret: SECRET }, 'url', 'must not point'],
    [{ type: 'webhook', url: 'https://siem.example/h', secret: 'short' }, 'secret', 'between 16 and 512'],
    [{ type: 'webhook', url: 'https://siem.example/h', secret: `${SECRET}\n` }, 'secret', 'whitespace'],
    [{ type: 'webhook', url: 'https://siem.example/h', secret: SECRET, extra: 1 }, 'extra', 'unknown field'],
    [{ type: 'splunk_hec', url: 'https://s.example', token: '' }, 'token', 'is required'],
    [
      { type: 'splunk_hec', url: 'https://s.example', token: TOKEN, index: '_internal' },
      'index',
      'index name',
    ],
    [{ type: 'syslog', port: 514, transport: 'tcp' }, 'host', 'is required'],
    [{ type: 'syslog', host: 'bad host!', port: 514, transport: 'tcp' }, 'host', 'hostname or an IP'],
    [{ type: 'syslog', host: '10.1.2.3', port: 514, transport: 'tcp' }, 'host', 'must not be a loopback'],
    [{ type: 'syslog', host: 'logs.example', port: 0, transport: 'tcp' }, 'port', 'between 1 and 65535'],
    [{ type: 'syslog', host: 'logs.example', port: '514', transport: 'tcp' }, 'port', 'between 1 and 65535'],
    [
      { type: 'syslog', host: 'logs.example', port: 514, transport: 'udp' },
      'transport',
      'must be "tcp" or "tls"',
    ],
    [
      { type: 'syslog', host: 'logs.example', port: 514, transport: 'tcp', ca: 'x' },
      'ca',
      'only to transport "tls"',
    ],
    [{ type: 'syslog', host: 'logs.example', port: 514, transport: 'tls', ca: 'x' }, 'ca', 'PEM'],
    [
      {
        type: 'syslog',
        host: 'logs.example',
        port: 514,
        transport: 'tls',
        ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      },
      'ca',
      'not a valid PEM certificate',
    ],
    [
      { type: 'syslog', host: 'logs.example', port: 514, transport: 'tls', facility: 24 },
      'facility',
      '0 and 23',
    ],
    [
      { type: 'syslog', host: 'logs.example', port: 514, transport: 'tls', app_name: 'war den' },
      'app_name',
      'ASCII',
    ],
    [
      { type: 'syslog', host: 'l.example', port: 514, transport: 'tls', message_format: 'xml' },
      'message_format',
      'json',
    ],
  ])('rejects %j at %s', (input, field, message) => {
    const error = failure(input);
    expect(error.field).toBe(field);
    expect(error.message).toContain(`${field}: `);
    expect(error.message).toContain(message);
  });

  it('reports every problem, with the prefix, and never the secret values', () => {
    const error = failure(
      { type: 'splunk_hec', url: `http://siem.example/${TOKEN}`, token: `${TOKEN} ${SECRET}`, index: 'BAD' },
      { fieldPrefix: 'config' },
    );
    expect(error.field).toBe('config.url');
    expect(error.all).toEqual([
      { field: 'config.url', message: 'must use https' },
      { field: 'config.token', message: 'must not contain whitespace or control characters' },
      {
        field: 'config.index',
        message: 'must be a Splunk index name (lowercase letters, digits, "_" and "-")',
      },
    ]);
    const serialized = JSON.stringify(error);
    expect(serialized).not.toContain(TOKEN);
    expect(serialized).not.toContain(SECRET);
  });

  it('allows http and loopback only when the options say so', () => {
    const local = { type: 'webhook', url: 'http://127.0.0.1:8080/h', secret: SECRET };
    expect(failure(local, { allowPrivateNetwork: true }).message).toContain('must use https');
    expect(failure(local, { allowInsecureHttp: true }).message).toContain('loopback');
    expect(parseSinkConfig(local, { allowInsecureHttp: true, allowPrivateNetwork: true })).toEqual(local);
  });

  it('accepts a real PEM CA for TLS syslog', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'warden-ca-'));
    try {
      const { caPem: ca } = makeCertificates(dir);
      expect(
        parseSinkConfig({ type: 'syslog', host: 'logs.example', port: 6514, transport: 'tls', ca }),
      ).toMatchObject({
        ca,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
