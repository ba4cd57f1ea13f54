import { EventEmitter } from 'node:events';
import type { Logger } from '@warden/core';
import { Redis } from 'ioredis';

/**
 * Fan-out between replicas: revocations that must reach every replica within a second
 * (MCP sessions to close) and SSE messages for the replica holding the stream. Redis
 * pub/sub when REDIS_URL is set; an in-process emitter otherwise (single node).
 */
export interface EventBus {
  publish(channel: string, message: unknown): Promise<void>;
  subscribe(channel: string, handler: (message: unknown) => void): Promise<void>;
  /**
   * Since when (epoch ms) every message published has reached this replica's handlers, or
   * null while it may miss some (the subscriber is disconnected). A cache invalidated
   * through the bus trusts only entries made after this.
   */
  deliveringSince(): number | null;
  /**
   * Called each time delivery resumes after the subscriber was disconnected (it may have missed
   * messages meanwhile): for state that no cache timestamp covers, such as retired keys.
   */
  onResumed(handler: () => void): void;
  /** Connects (Redis); until then nothing is delivered and `deliveringSince` is null. */
  start(): Promise<void>;
  close(): Promise<void>;
}

export function createLocalEventBus(): EventBus {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  const created = Date.now();
  return {
    deliveringSince: () => created,
    onResumed() {},
    async start() {},
    async publish(channel, message) {
      emitter.emit(channel, structuredClone(message));
    },
    async subscribe(channel, handler) {
      emitter.on(channel, handler);
    },
    async close() {
      emitter.removeAllListeners();
    },
  };
}

/**
 * Channels are namespaced with the deployment's Redis prefix (`<prefix>:<channel>`), so
 * deployments sharing a Redis never hear each other.
 */
export function createRedisEventBus(url: string, logger: Logger, options: { prefix: string }): EventBus {
  const pub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const sub = new Redis(url, { lazyConnect: true });
  pub.on('error', () => {});
  // One line per outage: ioredis reports every failed reconnection.
  let erring = false;
  sub.on('error', (err) => {
    if (erring) return;
    erring = true;
    logger.warn({ err }, 'event bus subscriber error (further errors are not logged until Redis is back)');
  });
  const named = (channel: string) => `${options.prefix}:${channel}`;
  const handlers = new Map<string, Array<(message: unknown) => void>>();
  // Messages published while the subscriber is down are lost for good: whatever was cached
  // before a reconnection is not trusted after it.
  let since: number | null = null;
  let interrupted = false;
  const resumed: Array<() => void> = [];
  const resume = () => {
    if (!interrupted) return;
    interrupted = false;
    for (const handler of resumed) handler();
  };
  sub.on('ready', () => {
    erring = false;
    // Channels first subscribed while Redis was away are subscribed now (again, harmlessly, for
    // those the client renewed itself); delivery counts from when Redis confirmed them.
    const channels = [...handlers.keys()];
    if (channels.length === 0) {
      since = Date.now();
      resume();
      return;
    }
    const asked = Date.now();
    sub.subscribe(...channels).then(
      () => {
        if (sub.status !== 'ready') return;
        since = asked;
        resume();
      },
      () => undefined,
    );
  });
  for (const event of ['close', 'reconnecting', 'end'] as const) {
    sub.on(event, () => {
      if (since !== null) interrupted = true;
      since = null;
    });
  }
  sub.on('message', (channel: string, payload: string) => {
    let message: unknown;
    try {
      message = JSON.parse(payload);
    } catch {
      return;
    }
    for (const handler of handlers.get(channel) ?? []) handler(message);
  });
  return {
    deliveringSince: () => since,
    onResumed(handler) {
      resumed.push(handler);
    },
    async start() {
      await Promise.all([pub.connect(), sub.connect()]).catch((err: unknown) =>
        logger.warn({ err }, 'event bus: Redis unreachable, retrying'),
      );
      if (sub.status === 'ready') since ??= Date.now();
    },
    async publish(channel, message) {
      await pub.publish(named(channel), JSON.stringify(message));
    },
    async subscribe(channel, handler) {
      const list = handlers.get(named(channel)) ?? [];
      list.push(handler);
      handlers.set(named(channel), list);
      // While Redis is away this does not wait: the channel is subscribed once the client is ready.
      if (list.length === 1 && sub.status === 'ready')
        await sub.subscribe(named(channel)).catch(() => undefined);
    },
    async close() {
      handlers.clear();
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}
