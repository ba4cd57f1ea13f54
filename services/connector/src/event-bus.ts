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
  close(): Promise<void>;
}

export function createLocalEventBus(): EventBus {
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  return {
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

export async function createRedisEventBus(url: string, logger: Logger): Promise<EventBus> {
  const pub = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const sub = new Redis(url, { lazyConnect: true });
  pub.on('error', () => {});
  sub.on('error', (err) => logger.warn({ err }, 'event bus subscriber error'));
  await Promise.all([pub.connect(), sub.connect()]).catch((err: unknown) =>
    logger.warn({ err }, 'event bus: Redis unreachable, retrying'),
  );
  const handlers = new Map<string, Array<(message: unknown) => void>>();
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
    async publish(channel, message) {
      await pub.publish(channel, JSON.stringify(message));
    },
    async subscribe(channel, handler) {
      const list = handlers.get(channel) ?? [];
      list.push(handler);
      handlers.set(channel, list);
      if (list.length === 1) await sub.subscribe(channel);
    },
    async close() {
      handlers.clear();
      await Promise.allSettled([pub.quit(), sub.quit()]);
    },
  };
}
