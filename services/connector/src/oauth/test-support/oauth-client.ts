import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';

/**
 * The MCP client's side of OAuth, as a desktop client keeps it: in memory, with the
 * authorization URL handed to whoever plays the browser.
 */
export class TestOAuthClientProvider implements OAuthClientProvider {
  authorizationUrl: URL | null = null;
  #client: OAuthClientInformationMixed | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = '';
  readonly clientMetadataUrl: string | undefined;
  readonly callbackUrl: string;
  readonly #name: string;

  constructor(callbackUrl: string, options: { clientMetadataUrl?: string; clientName?: string } = {}) {
    this.callbackUrl = callbackUrl;
    this.clientMetadataUrl = options.clientMetadataUrl;
    this.#name = options.clientName ?? 'Test MCP client';
  }

  get redirectUrl(): string {
    return this.callbackUrl;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.#name,
      redirect_uris: [this.callbackUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.#client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens) {
    this.#tokens = tokens;
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier: string) {
    this.#verifier = verifier;
  }
  codeVerifier() {
    return this.#verifier;
  }
}

/**
 * Connects the official MCP client to a bare `/mcp` URL. The first attempt meets the 401 and
 * runs discovery and registration; `signIn` plays the browser on the authorization URL and
 * returns where it was redirected; then the code is exchanged and the client connects.
 */
export async function connectWithOAuth(
  mcpUrl: string,
  provider: TestOAuthClientProvider,
  signIn: (authorizationUrl: URL) => Promise<string>,
): Promise<Client> {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  const probe = new Client({ name: 'oauth-test-client', version: '1.0.0' });
  const refused = await probe.connect(first).then(
    () => null,
    (error: unknown) => error,
  );
  if (!(refused instanceof UnauthorizedError)) {
    throw new Error(`expected the first connection to need authorization, got ${String(refused)}`);
  }
  if (!provider.authorizationUrl) throw new Error('the client was not sent to authorize');
  const callback = new URL(await signIn(provider.authorizationUrl));
  const code = callback.searchParams.get('code');
  if (!code) {
    throw new Error(
      `no code: ${callback.searchParams.get('error')} ${callback.searchParams.get('error_description')}`,
    );
  }
  await first.finishAuth(code);
  const client = new Client({ name: 'oauth-test-client', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
  return client;
}
