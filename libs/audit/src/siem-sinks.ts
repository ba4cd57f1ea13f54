import { assertNever } from '@warden/core';
import type { AuditSink, SinkRuntimeOptions } from './audit-sink.ts';
import type { SinkConfig } from './sink-config.ts';
import { createSplunkHecSink } from './splunk-hec-sink.ts';
import { createSyslogSink } from './syslog-sink.ts';
import { createWebhookSink } from './webhook-sink.ts';

/** The sink for a stored (already validated) tenant configuration. */
export function createAuditSink(config: SinkConfig, options: SinkRuntimeOptions = {}): AuditSink {
  switch (config.type) {
    case 'webhook':
      return createWebhookSink(config, options);
    case 'splunk_hec':
      return createSplunkHecSink(config, options);
    case 'syslog':
      return createSyslogSink(config, options);
    default:
      return assertNever(config);
  }
}
