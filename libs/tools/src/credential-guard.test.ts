import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { specFixturePath } from '@warden/testing';
import {
  credentialOperation,
  mintedCredential,
  withholdCredentialSecrets,
  withheldMarker,
} from './credential-guard.ts';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

describe('credential guard', () => {
  it('guards exactly the credential operations of the API document', () => {
    const document = JSON.parse(readFileSync(specFixturePath(), 'utf8')) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const guarded: string[] = [];
    for (const [path, item] of Object.entries(document.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const operation = credentialOperation({ method, path });
        if (operation)
          guarded.push(
            `${method.toUpperCase()} ${path} ${operation.kind}${operation.revocable ? ' (recorded)' : ''}`,
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
      'GET /accounts/{account_id}/cfd_tunnel/{tunnel_id}/token tunnel_tokens',
      'GET /accounts/{account_id}/challenges/widgets service_secrets',
      'GET /accounts/{account_id}/challenges/widgets/{sitekey} service_secrets',
      'GET /accounts/{account_id}/images/v1/keys images_signing_keys',
      'GET /accounts/{account_id}/secondary_dns/tsigs service_secrets',
      'GET /accounts/{account_id}/secondary_dns/tsigs/{tsig_id} service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs/{live_input_identifier} service_secrets',
      'GET /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs service_secrets',
      'GET /accounts/{account_id}/warp_connector/{tunnel_id}/token tunnel_tokens',
      'POST /accounts/{account_id}/access/service_tokens access_service_tokens (recorded)',
      'POST /accounts/{account_id}/access/service_tokens/{service_token_id}/refresh access_service_tokens',
      'POST /accounts/{account_id}/access/service_tokens/{service_token_id}/rotate access_service_tokens',
      'POST /accounts/{account_id}/alerting/v3/destinations/webhooks service_secrets',
      'POST /accounts/{account_id}/calls/apps calls_secrets (recorded)',
      'POST /accounts/{account_id}/calls/turn_keys calls_secrets (recorded)',
      'POST /accounts/{account_id}/cfd_tunnel tunnel_tokens',
      'POST /accounts/{account_id}/cfd_tunnel/{tunnel_id}/management tunnel_tokens',
      'POST /accounts/{account_id}/challenges/widgets service_secrets',
      'POST /accounts/{account_id}/challenges/widgets/{sitekey}/rotate_secret service_secrets',
      'POST /accounts/{account_id}/magic/ipsec_tunnels/{ipsec_tunnel_id}/psk_generate service_secrets',
      'POST /accounts/{account_id}/r2/temp-access-credentials r2_temporary_credentials',
      'POST /accounts/{account_id}/secondary_dns/tsigs service_secrets',
      'POST /accounts/{account_id}/stream/keys stream_signing_keys (recorded)',
      'POST /accounts/{account_id}/stream/live_inputs service_secrets',
      'POST /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs service_secrets',
      'POST /accounts/{account_id}/tunnels tunnel_tokens',
      'POST /accounts/{account_id}/warp_connector tunnel_tokens',
      'POST /user/tokens api_tokens (recorded)',
      'POST /zones/{zone_id}/access/service_tokens access_service_tokens (recorded)',
      'PUT /accounts/{account_id}/alerting/v3/destinations/webhooks/{webhook_id} service_secrets',
      'PUT /accounts/{account_id}/calls/apps/{app_id} calls_secrets',
      'PUT /accounts/{account_id}/calls/turn_keys/{key_id} calls_secrets',
      'PUT /accounts/{account_id}/challenges/widgets/{sitekey} service_secrets',
      'PUT /accounts/{account_id}/images/v1/keys/{signing_key_name} images_signing_keys',
      'PUT /accounts/{account_id}/secondary_dns/tsigs/{tsig_id} service_secrets',
      'PUT /accounts/{account_id}/stream/live_inputs/{live_input_identifier} service_secrets',
      'PUT /accounts/{account_id}/stream/live_inputs/{live_input_identifier}/outputs/{output_identifier} service_secrets',
      'PUT /user/tokens/{token_id} api_tokens',
      'PUT /user/tokens/{token_id}/value api_tokens',
    ]);
  });

  it('also guards account-owned tokens and API keys (newer documents), in any case, and leaves reads open', () => {
    expect(credentialOperation({ method: 'POST', path: '/accounts/a/tokens' })).toEqual({
      kind: 'api_tokens',
      revocable: true,
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
    const { response, withheld } = withholdCredentialSecrets(created, 'api_tokens');
    expect(response.result).toEqual({
      id: 't1',
      name: 'ci',
      value: withheldMarker('api_tokens'),
      policies: [{ id: 'p', value: null }],
    });
    expect(withheld).toEqual(['result.value']);
    expect(created.result.value).toBe('SECRET-1');

    const rolled = withholdCredentialSecrets({ success: true, result: 'SECRET-2' }, 'api_tokens');
    expect(rolled).toEqual({
      response: { success: true, result: withheldMarker('api_tokens') },
      withheld: ['result'],
    });

    const r2 = withholdCredentialSecrets(
      { success: true, result: { accessKeyId: 'AK', secretAccessKey: 'S', sessionToken: 'T' } },
      'r2_temporary_credentials',
    );
    expect(r2.withheld).toEqual(['result.secretAccessKey', 'result.sessionToken']);
    expect(JSON.stringify(r2.response)).not.toMatch(/"S"|"T"/);

    const nothing = { success: false, result: null };
    expect(withholdCredentialSecrets(nothing, 'api_tokens').response).toBe(nothing);
  });

  it('names what a creation minted, and how to revoke it', () => {
    const create = { kind: 'api_tokens' as const, revocable: true };
    expect(
      mintedCredential(create, '/user/tokens', { success: true, result: { id: 'abc123', value: 'x' } }),
    ).toEqual({
      kind: 'api_tokens',
      upstreamId: 'abc123',
      revokePath: '/user/tokens/abc123',
    });
    // Calls apps and TURN keys name what they created `uid`.
    expect(
      mintedCredential({ kind: 'calls_secrets', revocable: true }, '/accounts/a/calls/turn_keys', {
        success: true,
        result: { uid: 'k1', key: 'secret' },
      }),
    ).toEqual({ kind: 'calls_secrets', upstreamId: 'k1', revokePath: '/accounts/a/calls/turn_keys/k1' });
    expect(mintedCredential(create, '/user/tokens', { success: false, result: null })).toBeNull();
    expect(mintedCredential(create, '/user/tokens', { success: true, result: { id: '../x' } })).toBeNull();
    expect(
      mintedCredential({ kind: 'api_tokens', revocable: false }, '/user/tokens/t/value', {
        success: true,
        result: 'v',
      }),
    ).toBeNull();
  });
});
