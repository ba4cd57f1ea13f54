import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { specFixturePath } from '@warden/testing';
import { answerStringFields, answerWith } from './test-support/api-document.ts';
import {
  type CredentialOperation,
  type MintedCredentialRef,
  UNRECORDABLE,
  credentialOperation,
  mintedCredential,
  revocationBody,
  withholdCredentialSecrets,
  withheldMarker,
} from './credential-guard.ts';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function operationOf(method: string, path: string): CredentialOperation {
  const operation = credentialOperation({ method, path });
  if (!operation) throw new Error(`${method} ${path} is not a credential operation`);
  return operation;
}

describe('credential guard', () => {
  it('refuses by default exactly the credential operations of the API document', () => {
    const document = JSON.parse(readFileSync(specFixturePath(), 'utf8')) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const guarded: string[] = [];
    for (const [path, item] of Object.entries(document.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const operation = credentialOperation({ method, path });
        if (operation?.guarded)
          guarded.push(
            `${method.toUpperCase()} ${path} ${operation.kind}${operation.revokes ? ` (revoked: ${operation.revokes})` : ''}`,
          );
      }
    }
    expect(guarded.sort()).toEqual([
      'DELETE /accounts/{account_id}/calls/apps/{app_id} calls_secrets',
      'DELETE /accounts/{account_id}/calls/turn_keys/{key_id} calls_secrets',
      'DELETE /accounts/{account_id}/images/v1/keys/{signing_key_name} images_signing_keys',
      'DELETE /user/tokens/{token_id} api_tokens',
      'GET /accounts/{account_id}/alerting/v3/destinations/webhooks service_secrets',
      'GET /accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id} service_secrets',
      'GET /accounts/{account_id}/calls/apps calls_secrets',
      'GET /accounts/{account_id}/calls/apps/{app_id} calls_secrets',
      'GET /accounts/{account_id}/calls/turn_keys calls_secrets',
      'GET /accounts/{account_id}/calls/turn_keys/{key_id} calls_secrets',
      'GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/token tunnel_tokens',
      'GET /accounts/{account_id}/challenges/widgets service_secrets',
      'GET /accounts/{account_id}/challenges/widgets/{sitekey} service_secrets',
      'GET /accounts/{account_id}/devices/{device_id}/override_codes service_secrets',
      'GET /accounts/{account_id}/images/v1/keys images_signing_keys',
      'GET /accounts/{account_id}/secondary_dns/tsigs service_secrets',
      'GET /accounts/{account_id}/secondary_dns/tsigs/{tsig_id} service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs/{live_input_identifier} service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs service_secrets',
      'GET /accounts/{account_id}/stream/webhook service_secrets',
      'GET /accounts/{account_id}/warp_connector/{tunnel_id}/token tunnel_tokens',
      'PATCH /accounts/{account_id}/cfd_tunnel/{tunnel_id} tunnel_tokens',
      'PATCH /accounts/{account_id}/warp_connector/{tunnel_id} tunnel_tokens',
      'PATCH /zones/{zone_id}/client_certificates/{client_certificate_id} certificates',
      'POST /accounts/{account_id}/access/certificates certificates (revoked: child)',
      'POST /accounts/{account_id}/access/service_tokens access_service_tokens (revoked: child)',
      'POST /accounts/{account_id}/access/service_tokens/{service_token_id}/refresh access_service_tokens',
      'POST /accounts/{account_id}/access/service_tokens/{service_token_id}/rotate access_service_tokens (revoked: again)',
      'POST /accounts/{account_id}/alerting/v3/destinations/webhooks service_secrets',
      'POST /accounts/{account_id}/calls/apps calls_secrets (revoked: child)',
      'POST /accounts/{account_id}/calls/turn_keys calls_secrets (revoked: child)',
      'POST /accounts/{account_id}/cfd_tunnel tunnel_tokens',
      'POST /accounts/{account_id}/cfd_tunnel/{tunnel_id}/management tunnel_tokens',
      'POST /accounts/{account_id}/challenges/widgets service_secrets',
      'POST /accounts/{account_id}/challenges/widgets/{sitekey}/rotate_secret service_secrets (revoked: again)',
      'POST /accounts/{account_id}/magic/ipsec_tunnels service_secrets',
      'POST /accounts/{account_id}/magic/ipsec_tunnels/{ipsec_tunnel_id}/psk_generate service_secrets (revoked: again)',
      'POST /accounts/{account_id}/members account_members (revoked: child)',
      'POST /accounts/{account_id}/mtls_certificates certificates (revoked: child)',
      'POST /accounts/{account_id}/r2/temp-access-credentials r2_temporary_credentials',
      'POST /accounts/{account_id}/secondary_dns/tsigs service_secrets',
      'POST /accounts/{account_id}/stream/keys stream_signing_keys (revoked: child)',
      'POST /accounts/{account_id}/stream/live_inputs service_secrets',
      'POST /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs service_secrets',
      'POST /accounts/{account_id}/stream/{identifier}/token stream_signing_keys',
      'POST /accounts/{account_id}/tunnels tunnel_tokens',
      'POST /accounts/{account_id}/warp_connector tunnel_tokens',
      'POST /accounts/{account_id}/workers/scripts/{script_name}/tails service_secrets (revoked: child)',
      'POST /certificates certificates (revoked: child)',
      'POST /user/tokens api_tokens (revoked: child)',
      'POST /zones/{zone_id}/access/certificates certificates (revoked: child)',
      'POST /zones/{zone_id}/access/service_tokens access_service_tokens (revoked: child)',
      'POST /zones/{zone_id}/client_certificates certificates (revoked: child)',
      'PUT /accounts/{account_id}/access/certificates/settings certificates',
      'PUT /accounts/{account_id}/access/certificates/{certificate_id} certificates',
      'PUT /accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id} service_secrets',
      'PUT /accounts/{account_id}/calls/apps/{app_id} calls_secrets',
      'PUT /accounts/{account_id}/calls/turn_keys/{key_id} calls_secrets',
      'PUT /accounts/{account_id}/challenges/widgets/{sitekey} service_secrets',
      'PUT /accounts/{account_id}/images/v1/keys/{signing_key_name} images_signing_keys (revoked: self)',
      'PUT /accounts/{account_id}/magic/ipsec_tunnels service_secrets',
      'PUT /accounts/{account_id}/magic/ipsec_tunnels/{ipsec_tunnel_id} service_secrets',
      'PUT /accounts/{account_id}/secondary_dns/tsigs/{tsig_id} service_secrets',
      'PUT /accounts/{account_id}/stream/live_inputs/{live_input_identifier} service_secrets',
      'PUT /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs/{output_identifier} service_secrets',
      'PUT /accounts/{account_id}/stream/webhook service_secrets',
      'PUT /user/tokens/{token_id} api_tokens',
      'PUT /user/tokens/{token_id}/value api_tokens (revoked: again)',
      'PUT /zones/{zone_id}/access/certificates/settings certificates',
      'PUT /zones/{zone_id}/access/certificates/{certificate_id} certificates',
      'PUT /zones/{zone_id}/certificate_authorities/hostname_associations certificates',
    ]);
  });

  it('also guards account-owned tokens and API keys (newer documents), in any case, and leaves reads open', () => {
    expect(credentialOperation({ method: 'POST', path: '/accounts/a/tokens' })).toMatchObject({
      kind: 'api_tokens',
      revokes: 'child',
      guarded: true,
    });
    expect(credentialOperation({ method: 'PUT', path: '/accounts/a/tokens/t/value' })?.kind).toBe(
      'api_tokens',
    );
    expect(credentialOperation({ method: 'GET', path: '/user/api_key' })?.kind).toBe('api_keys');
    expect(credentialOperation({ method: 'post', path: '/USER/Tokens' })?.kind).toBe('api_tokens');
    expect(credentialOperation({ method: 'GET', path: '/user/tokens' })).toBeNull();
    expect(credentialOperation({ method: 'GET', path: '/user/tokens/verify' })).toBeNull();
    expect(credentialOperation({ method: 'GET', path: '/accounts/a/tokens/t' })).toBeNull();
  });

  it('withholds secrets: a string result, and secret-named fields at any depth', () => {
    const created = {
      success: true,
      status: 200,
      result: { id: 't1', name: 'ci', value: 'SECRET-1', policies: [{ id: 'p', value: null }] },
      errors: [],
    };
    const { response, withheld } = withholdCredentialSecrets(created, operationOf('POST', '/user/tokens'));
    expect(response.result).toEqual({
      id: 't1',
      name: 'ci',
      value: withheldMarker('api_tokens'),
      policies: [{ id: 'p', value: null }],
    });
    expect(withheld).toEqual(['result.value']);
    expect(created.result.value).toBe('SECRET-1');

    const rolled = withholdCredentialSecrets(
      { success: true, result: 'SECRET-2' },
      operationOf('PUT', '/user/tokens/t/value'),
    );
    expect(rolled).toEqual({
      response: { success: true, result: withheldMarker('api_tokens') },
      withheld: ['result'],
    });

    const r2 = withholdCredentialSecrets(
      { success: true, result: { accessKeyId: 'AK', secretAccessKey: 'S', sessionToken: 'T' } },
      operationOf('POST', '/accounts/a/r2/temp-access-credentials'),
    );
    expect(r2.withheld).toEqual(['result.secretAccessKey', 'result.sessionToken']);
    expect(JSON.stringify(r2.response)).not.toMatch(/"S"|"T"/);

    const nothing = { success: false, result: null };
    expect(withholdCredentialSecrets(nothing, operationOf('POST', '/user/tokens')).response).toBe(nothing);
  });

  it('names what a creation minted, and how to revoke it', () => {
    const create = operationOf('POST', '/user/tokens');
    const post = { method: 'POST', path: '/user/tokens' };
    expect(
      mintedCredential(create, post, { success: true, result: { id: 'abc123', value: 'x' } }, false),
    ).toEqual({
      kind: 'api_tokens',
      upstreamId: 'abc123',
      revokeMethod: 'DELETE',
      revokePath: '/user/tokens/abc123',
    });
    // Calls apps and TURN keys name what they created `uid`.
    expect(
      mintedCredential(
        operationOf('POST', '/accounts/a/calls/turn_keys'),
        { method: 'POST', path: '/accounts/a/calls/turn_keys' },
        { success: true, result: { uid: 'k1', key: 'secret' } },
        false,
      ),
    ).toEqual({
      kind: 'calls_secrets',
      upstreamId: 'k1',
      revokeMethod: 'DELETE',
      revokePath: '/accounts/a/calls/turn_keys/k1',
    });
    expect(mintedCredential(create, post, { success: false, result: null }, true)).toBeNull();
    // Made, but with no id Warden can put in a path: unrecordable (its secrets are withheld).
    expect(mintedCredential(create, post, { success: true, result: { id: '../x' } }, true)).toBe(
      UNRECORDABLE,
    );
    expect(mintedCredential(create, post, { success: true, result: { value: 'x' } }, false)).toBe(
      UNRECORDABLE,
    );
    // An Images key is created by name: the path itself is deleted.
    const key = { method: 'PUT', path: '/accounts/a/images/v1/keys/agentkey' };
    // (only if the agent saw it: it may have replaced a person's key of that name)
    expect(
      mintedCredential(operationOf(key.method, key.path), key, { success: true, result: {} }, false),
    ).toBeNull();
    expect(
      mintedCredential(operationOf(key.method, key.path), key, { success: true, result: {} }, true),
    ).toEqual({
      kind: 'images_signing_keys',
      upstreamId: 'agentkey',
      revokeMethod: 'DELETE',
      revokePath: key.path,
    });
    // Any name the agent's canonical path holds (it is deleted by that path).
    const odd = { method: 'PUT', path: '/accounts/a/images/v1/keys/agent~key!' };
    expect(
      mintedCredential(operationOf(odd.method, odd.path), odd, { success: true, result: {} }, true),
    ).toMatchObject({ upstreamId: 'agent~key!', revokePath: odd.path });
    // A rolled value is rolled again, but only if the agent saw it.
    const roll = { method: 'PUT', path: '/user/tokens/t1/value' };
    const rolled = { success: true, result: 'v' };
    expect(mintedCredential(operationOf(roll.method, roll.path), roll, rolled, false)).toBeNull();
    const again = mintedCredential(operationOf(roll.method, roll.path), roll, rolled, true);
    expect(again).toEqual({
      kind: 'api_tokens',
      upstreamId: 't1',
      revokeMethod: 'PUT',
      revokePath: roll.path,
    });
    expect(revocationBody(again as MintedCredentialRef)).toEqual({});
    const turnstile = {
      kind: 'service_secrets' as const,
      upstreamId: '0x4AAA',
      revokeMethod: 'POST' as const,
      revokePath: '/accounts/a/challenges/widgets/0x4AAA/rotate_secret',
    };
    expect(revocationBody(turnstile)).toEqual({ invalidate_immediately: true });
  });

  it('withholds every secret the API document says an answer shows, and nothing named like one that is not', () => {
    const secrets = secretFieldsOfDocument();
    // The document's own description of what is found: if it changes, the catalog is reviewed.
    expect(secrets.length).toBeGreaterThan(60);
    const missed: string[] = [];
    for (const { method, path, field } of secrets) {
      const concrete = path.replace(/\{[^}]+\}/g, 'id1');
      const operation = credentialOperation({ method, path: concrete });
      const answer: { success: boolean; result?: unknown } = {
        success: true,
        ...answerWith(field.startsWith('.result') ? field : `.result${field}`, SENTINEL),
      };
      const shown = operation ? withholdCredentialSecrets(answer, operation).response : answer;
      if (JSON.stringify(shown).includes(SENTINEL)) missed.push(`${method} ${path} ${field}`);
    }
    expect(missed).toEqual([]);

    // Open operations withhold only their fields: a flag named `secret` and other fields stay.
    const dataset = withholdCredentialSecrets(
      { success: true, result: { id: 'd', secret: true, name: 'n', version: 1 } },
      operationOf('PUT', '/accounts/a/dlp/datasets/d'),
    );
    expect(dataset.withheld).toEqual([]);
    const app = withholdCredentialSecrets(
      {
        success: true,
        result: { id: 'x', name: 'app', saas_app: { client_id: 'c', client_secret: 'S' }, value: 'kept' },
      },
      operationOf('GET', '/zones/z/access/apps/x'),
    );
    expect(app.response.result).toEqual({
      id: 'x',
      name: 'app',
      saas_app: { client_id: 'c', client_secret: withheldMarker('service_secrets') },
      value: 'kept',
    });
    // ...and they are not refused: reading an Access application needs no credential_operations.
    expect(operationOf('GET', '/accounts/a/access/apps').guarded).toBe(false);
  });
});

const SENTINEL = 'SECRET-FROM-THE-DOCUMENT';

/**
 * Answer fields whose names say "secret" (`secret`, `client_secret`, `password`, `private_key`,
 * `psk`, `passphrase`, `token`, `*_token`, `*Key`…) and are strings. `key` and `value` are too
 * common to read this way (a DNS value, a KV key): those of credential operations (a token's
 * `value`, an Images key's `value`, a TURN key's `key`) are in the catalog by review.
 */
const SECRET_NAME =
  /(secret|password|passwd|private_?key|custom_key|psk|passphrase|^token$|_token$|Token$|api_?key|access_?key|signing_?key|^pem$|^jwk$|streamKey)/i;
/** Strings the document describes as a secret, whatever their names. */
const SECRET_DESCRIPTION = /(private key|secret key|password|bearer token|the key for)/i;
const NAMED_LIKE_A_SECRET_BUT_NOT = /(public|continuation|_url$|_id$|Id$|^tokens|cursor)/i;
/** Strings named like secrets that are not, and why. */
const NOT_SECRETS: Readonly<Record<string, string>> = {
  // A custom certificate's geo policy (where its private key is held), not the key.
  policy: 'a region list',
  // The Web Analytics site token is public: it is written into every page's beacon snippet.
  site_token: 'public',
};

function secretFieldsOfDocument(): { method: string; path: string; field: string }[] {
  return answerStringFields(
    ({ name, description, at }) =>
      (SECRET_NAME.test(name) || SECRET_DESCRIPTION.test(description)) &&
      !NAMED_LIKE_A_SECRET_BUT_NOT.test(name) &&
      !(name in NOT_SECRETS) &&
      !/^\.(errors|messages)/.test(at),
  );
}
