export type {
  AuditCaller,
  AuditCheckpoint,
  AuditEvent,
  AuditKind,
  AuditOutcome,
  AuditUpstream,
  CallerType,
  CheckpointAnchor,
  CheckpointFields,
  CheckpointReason,
} from './audit-event.ts';
export { AUDIT_OUTCOMES, SYSTEM_TENANT_ID } from './audit-event.ts';
export {
  ADMIN_CALLER,
  SYSTEM_CALLER,
  checkpointEvent,
  lifecycleRecord,
  mcpOAuthRecord,
  outcomeOf,
  toolCallRecord,
  unknownOutcomeRecord,
  upstreamIntentRecord,
  upstreamFailureRecord,
  upstreamOutcomeRecord,
} from './audit-records.ts';
export type {
  AuditSubject,
  LifecycleFacts,
  McpOAuthFacts,
  ToolCallFacts,
  UpstreamFacts,
  UpstreamResult,
} from './audit-records.ts';
export { AuditJournal } from './audit-journal.ts';
export {
  ESCAPE_MARK,
  escapeAuditText,
  escapeAuditValue,
  unescapeAuditText,
  unescapeAuditValue,
} from './audit-text.ts';
export { toCefLine } from './cef-format.ts';
export {
  EXPORT_FORMATS,
  exportContentType,
  formatAuditLine,
  isExportFormat,
  toNdjsonLine,
} from './export-formats.ts';
export type { ExportFormat } from './export-formats.ts';
export { createAuditExportStream, formatAuditEvents } from './export-stream.ts';
export type { ExportStreamOptions } from './export-stream.ts';
export type { FormatOptions } from './format-common.ts';
export { OCSF_SCHEMA_VERSION, ocsfActivity, toOcsfEvent, toOcsfLine } from './ocsf-format.ts';
export type { OcsfActivity, OcsfActivityId, OcsfApiActivityEvent } from './ocsf-format.ts';
export { batchDeliveryId } from './audit-sink.ts';
export type { AuditSink, DeliveryContext, SinkRuntimeOptions } from './audit-sink.ts';
export { createAuditSink } from './siem-sinks.ts';
export { SINK_TYPES, parseSinkConfig } from './sink-config.ts';
export type {
  SinkConfig,
  SinkFieldError,
  SinkType,
  SinkValidationOptions,
  SplunkHecSinkConfig,
  SyslogSinkConfig,
  WebhookSinkConfig,
} from './sink-config.ts';
export { deliverBatch, nextAttemptDelayMs } from './sink-delivery.ts';
export type { BackoffOptions, DeliveryAttempt, DeliveryFailure, DeliveryOutcome } from './sink-delivery.ts';
export { SinkDeliveryError, isSinkDeliveryError } from './sink-errors.ts';
export { createSplunkHecSink } from './splunk-hec-sink.ts';
export { DEFAULT_SYSLOG_FACILITY, SYSLOG_SD_ID, createSyslogSink, toSyslogMessage } from './syslog-sink.ts';
export type { SyslogMessageOptions } from './syslog-sink.ts';
export {
  DEFAULT_SIGNATURE_TOLERANCE_SECONDS,
  WEBHOOK_DELIVERY_ID_HEADER,
  WEBHOOK_SIGNATURE_HEADER,
  createWebhookSink,
  signWebhookPayload,
  verifyWebhookSignature,
} from './webhook-sink.ts';
export {
  DEFAULT_RETENTION_DAYS,
  MAX_RETENTION_DAYS,
  MIN_RETENTION_DAYS,
  createAuditStore,
  expiryDay,
  rowToEvent,
  sha256Hex,
} from './audit.store.ts';
export type {
  AuditAppendOptions,
  AuditQuery,
  AuditRecordInput,
  AuditStore,
  AuditStoreOptions,
} from './audit.store.ts';
export { GENESIS_HASH, canonicalJson, hashEvent } from './audit-hash.ts';
export { verifyAllChains, verifyChain } from './audit-verify.ts';
export type { ChainProblem, ChainReport, CheckpointSummary, VerifyOptions } from './audit-verify.ts';
export {
  CHECKPOINT_FORMAT,
  checkpointDigest,
  checkpointMessage,
  createAuditCheckpointer,
  listCheckpoints,
} from './audit-checkpoints.ts';
export type {
  AuditCheckpointer,
  AuditCheckpointerOptions,
  CheckpointRunReport,
  CheckpointSignature,
  CheckpointSigner,
} from './audit-checkpoints.ts';
export {
  dropExpiredPartitions,
  ensurePartitions,
  listPartitions,
  partitionAnchors,
  partitionName,
  rescueDefaultPartition,
  runAuditMaintenance,
} from './audit-retention.ts';
export type {
  AuditPartition,
  BeforePartitionDrop,
  MaintenanceReport,
  RetentionAnchor,
} from './audit-retention.ts';
export { createOutboxDispatcher, enqueueOutbox } from './outbox.ts';
export type {
  DeliveryTarget,
  DestinationType,
  DispatchReport,
  OutboxDispatcher,
  OutboxDispatcherOptions,
  OutboxMessage,
  TargetResolver,
} from './outbox.ts';
export { isPrivateHost, publicOnlyLookup } from './network-guard.ts';
