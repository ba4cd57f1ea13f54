import { describe, expect, it } from 'vitest';
import { decide, leaksTo, shownToAgent } from './test-support/credential-views.ts';
import { canonicalizePath } from './canonical-path.ts';
import {
  credentialOperation,
  mintedCredential,
  revocationBody,
  changesOwnAccess,
} from './credential-guard.ts';
import type { MintedCredentialRef } from './credential-guard.ts';

/**
 * attack23d: an outsider's attacks on issue 14's claim ("credential-minting operations are
 * guarded") after the attack23b fixes, at the level of the catalog, the withholding and the
 * revocation records. Each test asserts the SECURE behaviour: it fails when the claim is broken.
 * Tests named HELD are attacks that did not get through.
 *
 * `shownToAgent` is what the agent gets for an answer under the default tenant policy: refused
 * (null) if the catalog guards the operation, else the answer with the catalog's fields withheld.
 */
const SECRET = 'ATTACK23D-SECRET-0123456789abcdef';

const leaks = leaksTo(SECRET);

/** A Logpush job listing answer (logpush_logpush_job_response_collection) with these confs. */
const jobs = (...confs: string[]) => ({
  success: true,
  result: confs.map((destination_conf, id) => ({ id, dataset: 'http_requests', destination_conf })),
});

describe('attack23d: the credential catalog, the withholding and the revocation records', () => {
  it('withholds Logpush destination credentials in the per-dataset job listings (GET …/logpush/datasets/{dataset}/jobs)', () => {
    // The document: "List Logpush jobs for a dataset", answered with the same
    // logpush_logpush_job_response_collection as GET …/logpush/jobs, destination_conf included.
    // The catalog withholds destination_conf under …/logpush/jobs/** only.
    const r2 = `r2://logs/{DATE}?account-id=a&access-key-id=AK&secret-access-key=${SECRET}`;
    const missed = [
      '/zones/z/logpush/datasets/http_requests/jobs',
      '/accounts/a/logpush/datasets/audit_logs/jobs',
    ].filter((path) => leaks(shownToAgent('GET', path, jobs(r2))));
    expect(missed, 'per-dataset job listings that show an R2 secret access key').toEqual([]);
  });

  it("withholds the credentials of other Logpush destinations' documented formats (New Relic Api-Key, Sumo Logic collector URL, HTTP userinfo)", () => {
    // Cloudflare's Logpush destinations: New Relic is
    // https://log-api.newrelic.com/log/v1?Api-Key=<NR_LICENSE_KEY>&format=cloudflare; Sumo Logic
    // is sumo://<endpoint>/receiver/v1/http/<UniqueHTTPCollectorCode> (the code is the credential:
    // whoever holds the URL can post to the collector); an HTTP endpoint may carry user:password.
    const confs = {
      newrelic: `https://log-api.newrelic.com/log/v1?Api-Key=${SECRET}&format=cloudflare`,
      sumo: `sumo://endpoint1.collection.us2.sumologic.com/receiver/v1/http/${SECRET}`,
      userinfo: `https://logs:${SECRET}@logs.example.com/ingest?tags=cf`,
    };
    const missed = Object.entries(confs)
      .filter(([, conf]) => leaks(shownToAgent('GET', '/zones/z/logpush/jobs', jobs(conf))))
      .map(([name]) => name);
    expect(missed, 'destinations whose credential reaches the agent').toEqual([]);
  });

  it('withholds destination_conf credential parameters whose names are percent-encoded', () => {
    // A query parser (Go's url.ParseQuery, what Logpush runs on) decodes names: these are the
    // same parameters as secret-access-key, header_Authorization and sig.
    const confs = [
      `s3://logs?region=auto&access-key-id=AK&secret%2Daccess%2Dkey=${SECRET}&endpoint=r2.example`,
      `https://logs.example/ingest?header%5FAuthorization=Bearer%20${SECRET}`,
      `azure://logs/cf?sv=2022-11-02&sp=w&%73ig=${SECRET}`,
    ];
    const missed = confs.filter((conf) =>
      leaks(shownToAgent('GET', '/accounts/a/logpush/jobs/1', jobs(conf))),
    );
    expect(missed).toEqual([]);
  });

  it('HELD destination_conf credential parameters in upper case, mixed case, after other parameters, repeated, or before a fragment', () => {
    const confs = [
      `s3://logs?region=auto&access-key-id=AK&SECRET-ACCESS-KEY=${SECRET}`,
      `azure://logs/cf?sv=2022-11-02&ss=b&srt=co&sp=w&se=2030-01-01&SIG=${SECRET}`,
      `datadog://http-intake.logs.datadoghq.com/v1/input?ddsource=cf&Header_DD-API-KEY=${SECRET}`,
      `https://logs.example/i?header_Authorization=Basic%20${SECRET}&header_X-Key=${SECRET}`,
      `https://logs.example/i?a=1&header_X-Key=${SECRET}#frag`,
      `r2://logs?secret-access-key=${SECRET}&secret-access-key=${SECRET}`,
    ];
    for (const path of ['/zones/z/logpush/jobs', '/accounts/a/logpush/jobs/7']) {
      expect(
        confs.filter((conf) => leaks(shownToAgent('GET', path, jobs(conf)))),
        path,
      ).toEqual([]);
    }
  });

  it('withholds the credentials that Load Balancing monitors and Health Checks send to origins (their `header` maps)', () => {
    // load_balancing_header / healthchecks_header: "The HTTP request headers to send in the health
    // check", a free map answered in full by every read. An origin behind Access is monitored with
    // an Access service token's CF-Access-Client-Secret (a credential access_service_tokens
    // guards); others with an Authorization header.
    const header = { Host: ['origin.example'], 'CF-Access-Client-Id': ['cid.access'] };
    const monitor = {
      id: 'm1',
      type: 'https',
      path: '/health',
      header: { ...header, 'CF-Access-Client-Secret': [SECRET], Authorization: [`Bearer ${SECRET}`] },
    };
    const answers: Array<[string, string, unknown]> = [
      ['GET', '/accounts/a/load_balancers/monitors', [monitor]],
      ['GET', '/accounts/a/load_balancers/monitors/m1', monitor],
      ['GET', '/user/load_balancers/monitors', [monitor]],
      ['GET', '/zones/z/healthchecks', [{ id: 'h1', name: 'origin', http_config: monitor }]],
      ['GET', '/zones/z/healthchecks/h1', { id: 'h1', name: 'origin', http_config: monitor }],
    ];
    const missed = answers
      .filter(([method, path, result]) => leaks(shownToAgent(method, path, { success: true, result })))
      .map(([method, path]) => `${method} ${path}`);
    expect(missed, 'monitor and health check reads that show an origin credential').toEqual([]);
  });

  it('refuses by default uploading a client-certificate CA the agent holds the key of (Access mTLS roots, API Shield BYO CA and its hostname association)', () => {
    // POST …/access/certificates "Adds a new mTLS root certificate to Access" for
    // associated_hostnames: an Access policy's "Valid certificate" rule then accepts any client
    // certificate the agent signs. POST …/mtls_certificates (ca: true) plus PUT
    // …/certificate_authorities/hostname_associations makes the zone's mTLS (API Shield) trust the
    // agent's CA: the power client_certificates guards, without Cloudflare's CA. Neither is
    // refused, recorded or undone on offboarding.
    const open = (
      [
        ['POST', '/accounts/a/access/certificates'],
        ['POST', '/zones/z/access/certificates'],
        ['PUT', '/accounts/a/access/certificates/c1'],
        ['POST', '/accounts/a/mtls_certificates'],
        ['PUT', '/zones/z/certificate_authorities/hostname_associations'],
      ] as const
    ).filter(([method, path]) => decide(method, path).allowed);
    expect(
      open.map(([m, p]) => `${m} ${p}`),
      'CA uploads sent under the default policy',
    ).toEqual([]);
  });

  it('refuses by default the issuance of an Origin CA certificate for a key the agent holds (POST /certificates)', () => {
    // "Create an Origin CA certificate": Cloudflare's Origin CA signs the agent's CSR for the
    // zone's hostnames, for up to 15 years (requested_validity 5475); Cloudflare's edge trusts it
    // under Full (strict). Revocable (DELETE /certificates/{id}) but neither guarded nor recorded.
    expect(decide('POST', '/certificates')).toMatchObject({ allowed: false });
  });

  it('refuses by default inviting an account member or changing a member’s roles (a dashboard login that outlives offboarding)', () => {
    // POST /accounts/{id}/members {email, roles}: the agent invites an address it controls as
    // Administrator; the login it then sets up is a credential to the whole account that Warden
    // neither sees nor revokes. Not a token, but the same persistence as an unrecorded API token.
    expect(decide('POST', '/accounts/a/members').allowed).toBe(false);
    // Changing or removing a member is refused whatever the policy (attack23h: it may be the
    // vaulted user's own entry): the gateway's own-access rule, checked before the policy.
    for (const method of ['PUT', 'PATCH', 'DELETE'])
      expect(changesOwnAccess(canonicalizePath('/accounts/a/members/m1'), null), method).toBe(true);
  });

  it('does not record for re-generation an IPsec PSK that was only validated (psk_generate?validate_only=true)', () => {
    // The document: "Use ?validate_only=true … to only run validation without persisting
    // changes". mintedCredential reads the method and path only, so a validation is recorded as
    // a generated PSK and offboarding generates a real one: the production tunnel's key is
    // replaced (and the site goes down) though the agent never changed it.
    const path = '/accounts/a/magic/ipsec_tunnels/0123456789abcdef0123456789abcdef/psk_generate';
    const operation = credentialOperation({ method: 'POST', path })!;
    const validation = { method: 'POST', path, query: { validate_only: 'true' } };
    const answer = {
      success: true,
      result: { ipsec_tunnel_id: '0123456789abcdef0123456789abcdef', psk: SECRET, psk_metadata: {} },
    };
    expect(mintedCredential(operation, validation, answer, true)).toBeNull();
  });

  it('HELD a re-roll is recorded on exactly the path the agent rolled, with the catalog body, and only when the agent saw the value', () => {
    const cases: Array<[string, string, unknown]> = [
      ['PUT', '/user/tokens/t1/value', {}],
      ['PUT', '/accounts/a/tokens/t1/value', {}],
      ['POST', '/accounts/a/access/service_tokens/s1/rotate', {}],
      ['POST', '/accounts/a/challenges/widgets/0x4AAA/rotate_secret', { invalidate_immediately: true }],
      ['POST', '/accounts/a/magic/ipsec_tunnels/i1/psk_generate', {}],
      // Odd spellings: recorded as sent, and the revocation finds the same body.
      ['PUT', '/USER/Tokens/t1/VALUE', {}],
      ['POST', '/accounts/a/ACCESS/service_tokens/s1/Rotate', {}],
    ];
    for (const [method, path, body] of cases) {
      const operation = credentialOperation({ method, path })!;
      expect(operation.revokes, path).toBe('again');
      const answer = { success: true, result: { id: 'x', secret: 's' } };
      expect(mintedCredential(operation, { method, path }, answer, false), path).toBeNull();
      const minted = mintedCredential(operation, { method, path }, answer, true);
      expect(minted, path).toMatchObject({ revokeMethod: method, revokePath: path });
      expect(revocationBody(minted as MintedCredentialRef), path).toEqual(body);
      expect(
        mintedCredential(operation, { method, path }, { success: false, result: null }, true),
      ).toBeNull();
    }
    // Nothing else is re-rolled: a token edit, a delete, a refresh, a read.
    for (const [method, path] of [
      ['PUT', '/user/tokens/t1'],
      ['DELETE', '/user/tokens/t1'],
      ['POST', '/accounts/a/access/service_tokens/s1/refresh'],
      ['GET', '/accounts/a/cfd_tunnel/t/token'],
    ] as const) {
      expect(credentialOperation({ method, path })?.revokes ?? null, path).not.toBe('again');
    }
  });

  it('HELD every Images key name the document allows is recorded for deletion (a PUT that creates a key by name)', () => {
    // images_signing_key_identifier: letters and digits, at most 20 characters.
    for (const name of ['someKey', 'a', 'K'.repeat(20), '0agent1']) {
      const path = `/accounts/a/images/v1/keys/${name}`;
      const operation = credentialOperation({ method: 'PUT', path })!;
      expect(
        mintedCredential(operation, { method: 'PUT', path }, { success: true, result: { keys: [] } }, true),
      ).toMatchObject({ upstreamId: name, revokeMethod: 'DELETE', revokePath: path });
    }
  });

  it('HELD a secret_text value is withheld wherever a Pages answer nests it (deployment lists, latest and canonical deployments, both environments)', () => {
    const vars = { A: { type: 'secret_text', value: SECRET }, B: { type: 'plain_text', value: 'kept' } };
    const project = {
      name: 'site',
      deployment_configs: { production: { env_vars: vars }, preview: { env_vars: vars } },
      latest_deployment: { id: 'd1', env_vars: vars },
      canonical_deployment: { id: 'd0', env_vars: vars },
    };
    expect(
      leaks(shownToAgent('GET', '/accounts/a/pages/projects', { success: true, result: [project] })),
    ).toBe(false);
    const deployments = {
      success: true,
      result: [
        { id: 'd1', env_vars: vars },
        { id: 'd2', env_vars: vars },
      ],
    };
    expect(leaks(shownToAgent('GET', '/accounts/a/pages/projects/site/deployments', deployments))).toBe(
      false,
    );
    const shown = shownToAgent('POST', '/accounts/a/pages/projects/site/deployments', {
      success: true,
      result: { id: 'd3', env_vars: vars },
    }) as { result: { env_vars: { B: { value: string } } } };
    expect(shown.result.env_vars.B.value).toBe('kept');
  });
});
