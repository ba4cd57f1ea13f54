import { existsSync } from 'node:fs';

/**
 * Integration tests run against real PostgreSQL and Redis. They read DATABASE_URL
 * and REDIS_URL; when either is unset and a Docker engine is available, this starts
 * throwaway containers with Testcontainers. They are never skipped: without a
 * database the run fails with instructions.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const stops: Array<() => Promise<unknown>> = [];
  const missing = ['DATABASE_URL', 'REDIS_URL'].filter((name) => !process.env[name]);
  if (missing.length > 0) {
    const dockerHost =
      process.env.DOCKER_HOST ??
      (existsSync('/var/run/docker.sock') ? 'unix:///var/run/docker.sock' : undefined);
    if (!dockerHost) {
      throw new Error(
        `${missing.join(' and ')} not set and no Docker engine found. Point them at PostgreSQL >= 14 and Redis >= 6, e.g.\n` +
          '  DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379 npm test',
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
