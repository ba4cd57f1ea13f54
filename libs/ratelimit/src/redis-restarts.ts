import { Redis } from 'ioredis';
import type { Cluster } from 'ioredis';

/**
 * When the Redis server behind a client last restarted while this replica knew it: a server
 * with another `run_id` after a reconnection is a new process, and without persistence it lost
 * every budget window. The windows then count Cloudflare's figure of "other" requests as
 * possibly Warden's own until a window after that start has passed (see `WINDOW_TAKE_SCRIPT`).
 *
 * What this cannot see, and the README says so: a restart while no replica was connected (every
 * replica starts with the run_id it first meets), `FLUSHALL`, and Redis Cluster (its nodes
 * restart one by one; the watch reports nothing there).
 */
export interface RedisRestartWatch {
  /**
   * Redis time (µs) at which the server last restarted under this replica, 0 when it has not.
   * After a reconnection it waits for the new server's `run_id` first, so no take is admitted on
   * a restarted server before the restart is known.
   */
  restartedAtUs(): Promise<number>;
  close(): void;
}

interface ServerInfo {
  readonly runId: string;
  /** Redis time (µs) when the server started: its clock now less its uptime. */
  readonly startedAtUs: number;
}

function serverInfo(text: string): ServerInfo | null {
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  const runId = fields.get('run_id');
  const nowUs = Number(fields.get('server_time_usec'));
  const uptime = Number(fields.get('uptime_in_seconds'));
  if (!runId || !Number.isFinite(nowUs) || !Number.isFinite(uptime)) return null;
  return { runId, startedAtUs: nowUs - uptime * 1_000_000 };
}

const NEVER: RedisRestartWatch = { restartedAtUs: async () => 0, close: () => {} };

export function watchRedisRestarts(redis: Redis | Cluster): RedisRestartWatch {
  if (!(redis instanceof Redis)) return NEVER;
  const client = redis;
  let runId: string | null = null;
  let restartedAtUs = 0;
  // True until this connection's run_id has been read; set again whenever the connection drops.
  let stale = true;
  let reading: Promise<void> | null = null;

  function read(): Promise<void> {
    reading ??= client
      .info('server')
      .then((text) => {
        const info = serverInfo(text);
        // A server that will not say (a proxy, a stripped INFO) cannot be watched: stop asking.
        if (!info) {
          stale = false;
          return;
        }
        if (runId !== null && info.runId !== runId) restartedAtUs = Math.max(restartedAtUs, info.startedAtUs);
        runId = info.runId;
        stale = false;
      })
      .catch((error: unknown) => {
        // INFO refused by an ACL: the same as a server that will not say. Connection errors leave
        // the watch stale; the take that follows fails on the same connection anyway.
        if (error instanceof Error && error.message.includes('NOPERM')) stale = false;
      })
      .finally(() => {
        reading = null;
      });
    return reading;
  }

  const onClose = () => {
    stale = true;
  };
  const onReady = () => {
    void read();
  };
  client.on('close', onClose);
  client.on('ready', onReady);
  if (client.status === 'ready') void read();

  return {
    async restartedAtUs(): Promise<number> {
      if (stale && client.status === 'ready') await read();
      return restartedAtUs;
    },
    close(): void {
      client.off('close', onClose);
      client.off('ready', onReady);
    },
  };
}
