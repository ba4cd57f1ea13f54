import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { decide, leaksTo, shownToAgent } from './test-support/credential-views.ts';
import { specFixturePath } from '@warden/testing';
import { canonicalizePath } from './canonical-path.ts';
import { credentialOperation, withholdCredentialSecrets, withheldMarker } from './credential-guard.ts';
import { parsePolicy } from './policy.ts';
import type { Policy } from './policy.ts';

/**
 * attack23b: an outsider's attacks on issue 14's claim ("credential-minting operations are
 * guarded"), at the level of the catalog and the policy. Each test asserts the SECURE behaviour:
 * it fails when the claim is broken. Tests named HELD are attacks that did not get through.
 *
 * `shownToAgent` is what the agent gets for an answer under the default tenant policy: refused
 * (null) if the catalog guards the operation, else the answer with the catalog's fields withheld.
 */
const SECRET = 'ATTACK23B-SECRET-0123456789abcdef';

const leaks = leaksTo(SECRET);

describe('attack23b: the credential catalog and the policy', () => {
  it('HELD every spelling of a guarded operation is refused by default (case, escapes, zone form, method case)', () => {
    const spellings: Array<[string, string]> = [
      ['POST', '/USER/TOKENS'],
      ['post', '/user/tokens'],
      ['POST', '/user/%74okens'],
      ['PUT', '/user/tokens/abc/VALUE'],
      ['POST', '/accounts/a/Tokens'],
      ['GET', '/Accounts/a/CFD_TUNNEL/t/Token'],
      ['GET', '/accounts/a/warp_connector/t/%74oken'],
      ['POST', '/accounts/a/r2/Temp-Access-Credentials'],
      ['POST', '/zones/z/access/service_tokens'],
      ['POST', '/zones/z/access/service_tokens/s/rotate'],
      ['POST', '/accounts/a/access/service_tokens/s/REFRESH'],
      ['GET', '/accounts/a/images/v1/KEYS'],
      ['POST', '/accounts/a/stream/v/token'],
      ['POST', '/accounts/a/magic/ipsec_tunnels/i/psk_generate'],
    ];
    const open = spellings.filter(([method, path]) => decide(method, path).allowed);
    expect(open).toEqual([]);
  });

  it('HELD path spellings that could route elsewhere are refused before policy', () => {
    for (const path of [
      '/user/tokens/',
      '/user//tokens',
      '/user/tokens;v=1',
      '/user%2Ftokens',
      '/accounts/a/%2e%2e/user/tokens',
      '/user/%2574okens',
      '/user/tokens?x=1',
      '/user/tokens%3B',
    ]) {
      expect(() => canonicalizePath(path), path).toThrow();
    }
  });

  it('HELD only the tenant policy opens a kind: identity credential_operations is refused at PUT, allow rules open nothing', () => {
    expect(() => parsePolicy({ credential_operations: { allow: ['api_tokens'] } }, '', 'identity')).toThrow(
      /only the tenant-wide policy/,
    );
    // A stored identity policy carrying the field (written before validation) still opens nothing.
    const identity = { credential_operations: { allow: ['api_tokens'] } } as unknown as Policy;
    expect(decide('POST', '/user/tokens', {}, identity)).toMatchObject({
      allowed: false,
      rule: 'credential_operations',
    });
    const allowAll: Policy = { rules: [{ effect: 'allow', methods: ['*'], path: '/**' }] };
    expect(decide('POST', '/user/tokens', allowAll, allowAll).allowed).toBe(false);
    // reveal_secrets without allow is refused at PUT.
    expect(() =>
      parsePolicy({ credential_operations: { reveal_secrets: ['api_tokens'] } }, '', 'tenant'),
    ).toThrow(/must also be in/);
  });

  it('HELD an allowed guarded answer has its secrets withheld in any shape (string result, nested arrays, credentials object)', () => {
    const tunnel = credentialOperation({ method: 'POST', path: '/accounts/a/cfd_tunnel' });
    expect(tunnel?.guarded).toBe(true);
    const created = withholdCredentialSecrets(
      {
        success: true,
        result: {
          id: 't',
          credentials_file: { AccountTag: 'a', TunnelID: 't', TunnelSecret: SECRET },
          token: SECRET,
          connections: [[{ tunnel_secret: SECRET }]],
        },
      },
      tunnel!,
    );
    expect(JSON.stringify(created.response)).not.toContain(SECRET);
    const rolled = withholdCredentialSecrets(
      { success: true, result: SECRET },
      credentialOperation({ method: 'GET', path: '/accounts/a/cfd_tunnel/t/token' })!,
    );
    expect(rolled.response.result).toBe(withheldMarker('tunnel_tokens'));
  });

  it('withholds, when service_secrets is allowed but not revealed, the WebRTC publish URL of a Stream live input (it embeds the stream key)', () => {
    // stream_input_webrtc_url: "The WebRTC URL you provide to the broadcaster", e.g.
    // https://customer-….cloudflarestream.com/<the live input's key>/webRTC/publish: publishing
    // to it needs nothing else. `streamKey` and `passphrase` are withheld; `url` is not.
    const operation = credentialOperation({ method: 'POST', path: '/accounts/a/stream/live_inputs' });
    expect(operation?.guarded).toBe(true);
    const { response } = withholdCredentialSecrets(
      {
        success: true,
        result: {
          uid: 'li1',
          rtmps: { url: 'rtmps://live.cloudflare.com:443/live/', streamKey: SECRET },
          srt: { url: 'srt://live.cloudflare.com:778', streamId: 'li1', passphrase: SECRET },
          webRTC: { url: `https://customer-x.cloudflarestream.com/${SECRET}/webRTC/publish` },
        },
      },
      operation!,
    );
    expect(leaks(response)).toBe(false);
  });

  it('refuses by default the operations that SET a credential to a value the agent chooses (tunnel secret, IPsec PSK)', () => {
    // "Sets the password required to run a locally-managed tunnel": whoever sets it can run the
    // tunnel (its run token is the account tag, the tunnel id and this secret). Creating a tunnel
    // and reading its token are guarded (tunnel_tokens); rolling an existing one's secret is not.
    const open = [
      ['PATCH', '/accounts/a/cfd_tunnel/0123456789abcdef0123456789abcdef'],
      ['PATCH', '/accounts/a/warp_connector/0123456789abcdef0123456789abcdef'],
      // "A randomly generated or provided string for use in the IPsec tunnel": psk_generate is
      // guarded (service_secrets), setting the PSK (and the customer endpoint) is not.
      ['PUT', '/accounts/a/magic/ipsec_tunnels/0123456789abcdef0123456789abcdef'],
      ['POST', '/accounts/a/magic/ipsec_tunnels'],
    ].filter(([method, path]) => decide(method as string, path as string).allowed);
    expect(open, 'credential-setting operations sent under the default policy').toEqual([]);
  });

  it('refuses by default the issuance of an API Shield mTLS client certificate (a credential Cloudflare signs)', () => {
    // POST /zones/{zone_id}/client_certificates: Cloudflare's managed CA signs the agent's CSR for
    // up to years; the certificate authenticates to every mTLS rule of the zone. Not in the
    // catalog, so it is neither refused nor recorded for revocation on offboarding.
    expect(decide('POST', '/zones/z/client_certificates')).toMatchObject({ allowed: false });
  });

  it('withholds the WARP admin override codes of a device (GET …/devices/{id}/override_codes)', () => {
    // The document: result.disable_for_time {"1","3","6","12","24"}: "Override code that is valid
    // for N hours", which lets whoever holds it switch off the WARP client and its Zero Trust
    // enforcement on that device. Neither refused nor withheld.
    const shown = shownToAgent('GET', '/accounts/a/devices/d1/override_codes', {
      success: true,
      result: { disable_for_time: { '1': SECRET, '3': SECRET, '6': SECRET, '12': SECRET, '24': SECRET } },
    });
    expect(leaks(shown)).toBe(false);
  });

  it('withholds the Stream webhook signing secret (PUT and GET …/stream/webhook answer `secret`)', () => {
    // Cloudflare's Stream documentation: the answer is {notificationUrl, modified, secret}, the
    // secret that signs (Webhook-Signature) every notification; the alerting webhooks' `secret`
    // is guarded, this one is not.
    for (const method of ['PUT', 'GET']) {
      const shown = shownToAgent(method, '/accounts/a/stream/webhook', {
        success: true,
        result: { notificationUrl: 'https://hook.example', modified: '2026-01-01T00:00:00Z', secret: SECRET },
      });
      expect(leaks(shown), method).toBe(false);
    }
  });

  it('withholds the secret_text environment variables of a Pages project and its deployments', () => {
    // pages_deployment_configs_values.env_vars.*: {type: "plain_text" | "secret_text", value}.
    const secretVar = {
      API_TOKEN: { type: 'secret_text', value: SECRET },
      MODE: { type: 'plain_text', value: 'x' },
    };
    const project = shownToAgent('GET', '/accounts/a/pages/projects/site', {
      success: true,
      result: {
        name: 'site',
        deployment_configs: { production: { env_vars: secretVar }, preview: { env_vars: secretVar } },
        latest_deployment: { id: 'd', env_vars: secretVar },
      },
    });
    expect(leaks(project), 'project').toBe(false);
    const deployment = shownToAgent('GET', '/accounts/a/pages/projects/site/deployments/d', {
      success: true,
      result: { id: 'd', env_vars: secretVar },
    });
    expect(leaks(deployment), 'deployment').toBe(false);
  });

  it('withholds the credentials inside a Logpush destination_conf (R2/S3 secret keys, Datadog key, Splunk token)', () => {
    const confs = [
      `r2://logs/{DATE}?account-id=a&access-key-id=AK&secret-access-key=${SECRET}`,
      `datadog://http-intake.logs.datadoghq.com/v1/input?header_DD-API-KEY=${SECRET}`,
      `splunk://splunk.example:8088/services/collector/raw?channel=c&header_Authorization=Splunk%20${SECRET}`,
    ];
    for (const path of ['/zones/z/logpush/jobs', '/accounts/a/logpush/jobs']) {
      const shown = shownToAgent('GET', path, {
        success: true,
        result: confs.map((destination_conf, id) => ({ id, dataset: 'http_requests', destination_conf })),
      });
      expect(leaks(shown), path).toBe(false);
    }
  });

  it("withholds a D1 export's presigned download URL (result.result.signed_url: the whole database for an hour)", () => {
    const shown = shownToAgent('POST', '/accounts/a/d1/database/db1/export', {
      success: true,
      result: {
        status: 'complete',
        result: {
          filename: 'db.sql',
          signed_url: `https://r2.example/db.sql?X-Amz-Credential=AK&X-Amz-Signature=${SECRET}`,
        },
      },
    });
    expect(leaks(shown)).toBe(false);
  });

  it('withholds the Zaraz debug key (debugKey: "The key for Zaraz debug mode")', () => {
    for (const [method, path] of [
      ['GET', '/zones/z/settings/zaraz/config'],
      ['GET', '/zones/z/settings/zaraz/export'],
    ] as const) {
      // The export answers the configuration without the envelope (the client makes it the result).
      const answer = { success: true, result: { debugKey: SECRET, tools: {} } };
      expect(leaks(shownToAgent(method, path, answer)), path).toBe(false);
    }
  });

  it('withholds every answer the API document types as a bare token string (result: "Bearer token")', () => {
    // The document's own test walks named properties only. A result that IS the secret (a string,
    // or an array of them) has no name: calls_turn_key ("Bearer token") is the result of the TURN
    // key listing and reads, and (a documented quirk) of the Calls app listing.
    const found = bareSecretResults();
    expect(found.length).toBeGreaterThan(3);
    const missed = found.filter(({ method, path, array }) => {
      const concrete = path.replace(/\{[^}]+\}/g, 'id1');
      return leaks(shownToAgent(method, concrete, { success: true, result: array ? [SECRET] : SECRET }));
    });
    expect(missed.map(({ method, path }) => `${method} ${path}`)).toEqual([]);
  });
});

type Schema = {
  readonly $ref?: string;
  readonly type?: string;
  readonly description?: string;
  readonly properties?: Record<string, Schema>;
  readonly items?: Schema;
  readonly allOf?: readonly Schema[];
  readonly oneOf?: readonly Schema[];
  readonly anyOf?: readonly Schema[];
};

/** 2xx answers whose `result` schema is a string (or array of strings) described as a token or secret. */
function bareSecretResults(): { method: string; path: string; array: boolean }[] {
  const document = JSON.parse(readFileSync(specFixturePath(), 'utf8')) as {
    paths: Record<string, Record<string, { responses?: Record<string, unknown> }>>;
  };
  const resolve = (node: unknown): Schema | undefined => {
    let at = node as Schema | undefined;
    for (let hops = 0; hops < 50 && at?.$ref; hops++) {
      at = at.$ref
        .replace(/^#\//, '')
        .split('/')
        .reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], document) as Schema;
    }
    return at;
  };
  const results = (node: unknown, depth = 0): Schema[] => {
    const schema = resolve(node);
    if (!schema || depth > 8) return [];
    const own = schema.properties?.result ? [resolve(schema.properties.result) as Schema] : [];
    return [
      ...own,
      ...[...(schema.allOf ?? []), ...(schema.oneOf ?? []), ...(schema.anyOf ?? [])].flatMap((s) =>
        results(s, depth + 1),
      ),
    ];
  };
  const SECRETISH = /token|secret|password|private key|api key/i;
  const out: { method: string; path: string; array: boolean }[] = [];
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      for (const [status, response] of Object.entries(item[method]?.responses ?? {})) {
        if (!status.startsWith('2')) continue;
        const content = (resolve(response) as { content?: Record<string, { schema?: unknown }> }).content;
        for (const result of results(content?.['application/json']?.schema)) {
          const items = result.type === 'array' ? resolve(result.items) : undefined;
          const leaf = items ?? result;
          if (leaf?.type === 'string' && SECRETISH.test(leaf.description ?? '')) {
            out.push({ method: method.toUpperCase(), path, array: items !== undefined });
          }
        }
      }
    }
  }
  return out;
}
