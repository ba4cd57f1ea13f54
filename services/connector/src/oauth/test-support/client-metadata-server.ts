import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ClientMetadataServer {
  /** The client id: the URL of the metadata document. */
  readonly clientId: string;
  /** Replaces the document served (to test changed or broken metadata). */
  setDocument(document: Record<string, unknown>): void;
  close(): Promise<void>;
}

/**
 * Serves an MCP client's Client ID Metadata Document over HTTPS on loopback, with a
 * certificate made for the test (Warden trusts it only with OAUTH_ALLOW_INSECURE).
 */
export async function startClientMetadataServer(metadata: {
  clientName: string;
  redirectUris: readonly string[];
}): Promise<ClientMetadataServer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'warden-cimd-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  let document: Record<string, unknown> = {};
  const server = createServer({ key: await readFile(key), cert: await readFile(cert) }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
    res.end(JSON.stringify(document));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const clientId = `https://127.0.0.1:${(server.address() as AddressInfo).port}/oauth/client.json`;
  document = {
    client_id: clientId,
    client_name: metadata.clientName,
    redirect_uris: [...metadata.redirectUris],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
  };
  return {
    clientId,
    setDocument(next) {
      document = next;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
