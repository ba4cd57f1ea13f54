import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

/** A port free right now on 127.0.0.1, for servers whose URL must be known before they listen. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
