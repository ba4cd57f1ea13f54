import { existsSync } from 'node:fs';
import { connect } from 'node:net';

/**
 * Integration tests run against real PostgreSQL and Redis. They read DATABASE_URL and
 * REDIS_URL; an unset one defaults to the local server (127.0.0.1) when it answers, else to a
 * throwaway container started with Testcontainers when a Docker engine is available. They are
 * never skipped: without a server the run stops at once with what to set.
 */
const LOCAL = {
  DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres',
  REDIS_URL: 'redis://127.0.0.1:6379',
} as const;
type Variable = keyof typeof LOCAL;
const WHAT: Record<Variable, string> = { DATABASE_URL: 'PostgreSQL >= 14', REDIS_URL: 'Redis >= 6' };
const PORTS: Record<Variable, number> = { DATABASE_URL: 5432, REDIS_URL: 6379 };

/** Whether something accepts TCP connections at the URL's host and port. */
async function reachable(url: string, defaultPort: number): Promise<string | null> {
  let host: string;
  let port: number;
  try {
    const parsed = new URL(url);
    host = parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1';
    port = Number(parsed.port || defaultPort);
  } catch {
    return 'is not a URL';
  }
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 2_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(null);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(`${host}:${port} did not answer within 2 s`);
    });
    socket.once('error', (error: NodeJS.ErrnoException) =>
      resolve(`${host}:${port}: ${error.code ?? error.message}`),
    );
  });
}

export default async function setup(): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = [];
  const missing: Variable[] = [];
  for (const name of ['DATABASE_URL', 'REDIS_URL'] as const) {
    const given = process.env[name];
    if (given) {
      const problem = await reachable(given, PORTS[name]);
      if (problem)
        // The problem names host and port only: the URL may carry a password.
        throw new Error(
          `${name} is not reachable (${problem}): start ${WHAT[name]} there or point ${name} at one`,
        );
    } else if ((await reachable(LOCAL[name], PORTS[name])) === null) {
      process.env[name] = LOCAL[name];
    } else {
      missing.push(name);
    }
  }
  if (missing.length > 0) {
    const dockerHost =
      process.env.DOCKER_HOST ??
      (existsSync('/var/run/docker.sock') ? 'unix:///var/run/docker.sock' : undefined);
    if (!dockerHost) {
      throw new Error(
        `${missing.join(' and ')} not set, nothing answers at ${missing.map((n) => LOCAL[n].replace(/^\w+:\/\/(\w+@)?/, '')).join(' / ')} and no Docker engine was found. ` +
          `Start ${missing.map((n) => WHAT[n]).join(' and ')} locally, or set ${missing.join(' and ')}, e.g.\n` +
          `  DATABASE_URL=postgres://USER@HOST:5432/postgres REDIS_URL=redis://HOST:6379 npm test\n` +
          '(the database user must be allowed to create databases: each test file makes its own)',
      );
    }
    const { GenericContainer, Wait } = await import('testcontainers');
    if (!process.env.DATABASE_URL) {
      const pg = await new GenericContainer('postgres:17-alpine')
        .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
        .withExposedPorts(5432)
        .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
        .start();
      stops.push(() => pg.stop());
      process.env.DATABASE_URL = `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`;
    }
    if (!process.env.REDIS_URL) {
      const redis = await new GenericContainer('redis:7-alpine').withExposedPorts(6379).start();
      stops.push(() => redis.stop());
      process.env.REDIS_URL = `redis://${redis.getHost()}:${redis.getMappedPort(6379)}`;
    }
  }
  return async () => {
    await Promise.all(stops.map((stop) => stop()));
  };
}
