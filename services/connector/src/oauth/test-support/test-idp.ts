import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

export interface TestIdpUser {
  readonly email: string;
  readonly password: string;
  /** The `email_verified` claim; null leaves it out. Default true. */
  readonly emailVerified?: boolean | null;
}

export interface TestIdp {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  close(): Promise<void>;
}

/**
 * A tenant's identity provider for tests: a real OpenID Connect provider (oidc-provider)
 * with its own login form and a fixed set of users. Warden is registered at it as a
 * confidential client whose redirect URI is Warden's SSO callback.
 */
export async function startTestIdp(options: {
  redirectUri: string;
  users: readonly TestIdpUser[];
}): Promise<TestIdp> {
  const clientId = 'warden';
  const clientSecret = `idp-secret-${Math.random().toString(36).slice(2)}`;
  const users = new Map(options.users.map((u) => [u.email, u]));
  const httpServer = createServer();
  await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(httpServer.address() as AddressInfo).port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [options.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    scopes: ['openid', 'email', 'profile'],
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['test-idp-cookie-key'] },
    ttl: { AccessToken: 300, Grant: 600, IdToken: 300, Interaction: 600, Session: 600 },
    findAccount: (_ctx, sub) => {
      const user = users.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          email: user.email,
          ...(user.emailVerified === null ? {} : { email_verified: user.emailVerified ?? true }),
        }),
      };
    },
  });
  // The development login form accepts any name: only the known users with their password pass.
  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path.startsWith('/interaction/')) {
      const chunks: Buffer[] = [];
      for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      const form = new URLSearchParams(raw);
      if (form.get('prompt') === 'login') {
        const user = users.get(form.get('login') ?? '');
        if (!user || user.password !== form.get('password')) {
          ctx.status = 403;
          ctx.body = 'wrong user or password';
          return;
        }
      }
      // The body is read now: oidc-provider takes the parsed one from here.
      Object.assign(ctx.request, { body: Object.fromEntries(form) });
    }
    await next();
  });
  httpServer.on('request', provider.callback());

  return {
    issuer,
    clientId,
    clientSecret,
    async close() {
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}
