import { describe, expect, it } from 'vitest';
import { answerStringFields, answerWith } from './test-support/api-document.ts';
import { leaksTo, shownToAgent } from './test-support/credential-views.ts';
import { canonicalizePath } from './canonical-path.ts';
import { credentialOperation, mintedCredential, changesOwnAccess } from './credential-guard.ts';
import { isWrite } from './policy.ts';

/**
 * attack23f: an outsider's third attack on issue 14's claim ("credential-minting operations are
 * guarded"), after the attack23d fixes, at the level of the catalog, the withholding, the
 * own-token rule and the revocation records. Each test asserts the SECURE behaviour: it fails
 * when the claim is broken. Tests named HELD are attacks that did not get through.
 *
 * `shownToAgent` is what the agent gets for an answer under the default tenant policy: refused
 * (null) if the catalog guards the operation, else the answer with the catalog's fields withheld.
 */
const SECRET = 'ATTACK23F-SECRET-0123456789abcdef';
/** Stands for a custom certificate's key (deliberately not PEM-shaped: no key material in the tree). */
const PRIVATE_KEY = `custom-key:${SECRET}`;

const leaks = leaksTo(SECRET);

/** What the gateway's own-token rule refuses: a write whose canonical path is the vaulted token's. */
const ownTokenRefuses = (method: string, path: string, tokenId: string) => {
  const canonical = canonicalizePath(path);
  return isWrite({ method, path: canonical }) && changesOwnAccess(canonical, tokenId);
};

/**
 * Every 2xx answer string field of the API document whose DESCRIPTION says it is a private key
 * (the catalog's own walk reads names only: `custom_key` is named like no secret).
 */
const privateKeysOfDocument = () =>
  answerStringFields(
    ({ description }) =>
      /^the [\w' ]*(private key|key for a custom uploaded certificate)\.?$/i.test(description),
    24,
  );

describe('attack23f: the catalog, the withholding and the own-token rule', () => {
  it('withholds the private key of a custom hostname’s uploaded certificate (ssl.custom_key: "The key for a custom uploaded certificate.")', () => {
    // custom-hostnames_custom_hostname_response: GET/POST/PATCH …/custom_hostnames answer
    // `ssl.custom_key`, the PEM private key of a SaaS customer's (or the zone's) certificate. The
    // catalog has no entry for …/custom_hostnames, and its walk of the document reads field names
    // only: `custom_key` matches none of its patterns, so the test that should catch it passes.
    const hostname = {
      id: 'ch1',
      hostname: 'app.customer.example',
      ssl: {
        method: 'http',
        type: 'dv',
        custom_certificate: '-----BEGIN CERTIFICATE-----',
        custom_key: PRIVATE_KEY,
      },
    };
    const answers: Array<[string, string, unknown]> = [
      ['GET', '/zones/z/custom_hostnames', [hostname]],
      ['GET', '/zones/z/custom_hostnames/ch1', hostname],
      ['PATCH', '/zones/z/custom_hostnames/ch1', hostname],
      ['POST', '/zones/z/custom_hostnames', hostname],
    ];
    const missed = answers
      .filter(([method, path, result]) => leaks(shownToAgent(method, path, { success: true, result })))
      .map(([method, path]) => `${method} ${path}`);
    expect(missed, 'answers that show a custom certificate private key to the agent').toEqual([]);
  });

  it('withholds every answer field the API document DESCRIBES as a private key, whatever its name', () => {
    const fields = privateKeysOfDocument();
    // The walk finds the known ones (origin TLS client auth) and custom_key.
    expect(fields.length).toBeGreaterThan(2);
    const shown = fields
      .filter(({ method, path, field }) => {
        const concrete = path.replace(/\{[^}]+\}/g, 'x');
        return leaks(shownToAgent(method, concrete, { success: true, ...answerWith(field, SECRET) }));
      })
      .map(({ method, path, field }) => `${method} ${path} ${field}`);
    expect(shown).toEqual([]);
  });

  it('HELD the own-token rule matches every spelling of the vaulted token’s path (case, escapes, account form, value roll)', () => {
    const id = '0123456789abcdef0123456789abcdef';
    const upper = id.toUpperCase();
    const escaped = [...id].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
    const refused: Array<[string, string]> = [
      ['DELETE', `/user/tokens/${id}`],
      ['PUT', `/user/tokens/${id}`],
      ['PUT', `/user/tokens/${id}/value`],
      ['put', `/USER/TOKENS/${upper}/VALUE`],
      ['DELETE', `/user/tokens/${escaped}`],
      ['PATCH', `/user/%74okens/${id}`],
      // An account-owned spelling of a user token's id (and the other way round).
      ['DELETE', `/accounts/acc/tokens/${id}`],
      ['PUT', `/accounts/acc/tokens/${upper}/value`],
      ['POST', `/Accounts/acc/Tokens/${id}/anything`],
    ];
    expect(refused.filter(([method, path]) => !ownTokenRefuses(method, path, id))).toEqual([]);
    // Reads of it, and other tokens, stay open.
    expect(ownTokenRefuses('GET', `/user/tokens/${id}`, id)).toBe(false);
    expect(ownTokenRefuses('DELETE', `/user/tokens/${id}0`, id)).toBe(false);
    expect(ownTokenRefuses('DELETE', `/user/tokens/x${id}`, id)).toBe(false);
    // A double-encoded or dot-segment spelling never reaches the rule: it is refused first.
    for (const path of [`/user/tokens/%25${id}`, `/user/x/../tokens/${id}`, `/user/tokens%2F${id}`]) {
      expect(() => canonicalizePath(path), path).toThrow();
    }
  });

  it('HELD an invited member is recorded for revocation by its membership id (what DELETE …/members/{member_id} takes), not its user’s id', () => {
    // The document: POST /accounts/{id}/members answers `result.id` "Membership identifier tag",
    // `result.user.id` the user; DELETE …/members/{member_id} takes the membership id.
    const path = '/accounts/acc/members';
    const operation = credentialOperation({ method: 'POST', path })!;
    expect(operation.kind).toBe('account_members');
    const answer = {
      success: true,
      result: { id: 'membership1', status: 'pending', user: { id: 'user1', email: 'x@agent.example' } },
    };
    expect(mintedCredential(operation, { method: 'POST', path }, answer, false)).toEqual({
      kind: 'account_members',
      upstreamId: 'membership1',
      revokeMethod: 'DELETE',
      revokePath: '/accounts/acc/members/membership1',
    });
    // A member whose status was set to accepted at once is recorded the same way.
    expect(
      mintedCredential(
        operation,
        { method: 'POST', path },
        { success: true, result: { ...answer.result, status: 'accepted' } },
        false,
      ),
    ).toMatchObject({ upstreamId: 'membership1' });
  });

  it('HELD the `header` that monitors and health checks send is withheld in every shape (array values, odd header names, nested, lists, previews)', () => {
    const header = {
      Authorization: [`Bearer ${SECRET}`],
      'cf-access-client-secret': [SECRET, 'second'],
      'X-API-KEY': [SECRET],
      'x-unicode-Ŝecret': [SECRET],
    };
    const monitor = { id: 'm1', type: 'https', header };
    const check = { id: 'h1', http_config: { header, path: '/' } };
    const answers: Array<[string, string, unknown]> = [
      ['GET', '/accounts/a/load_balancers/monitors', [monitor, { ...monitor, id: 'm2' }]],
      ['PUT', '/accounts/a/load_balancers/monitors/m1', monitor],
      ['PATCH', '/accounts/a/load_balancers/monitors/m1', monitor],
      ['POST', '/accounts/a/load_balancers/monitors/m1/preview', { preview_id: 'p', monitor }],
      ['GET', '/user/load_balancers/monitors/m1', monitor],
      ['POST', '/user/load_balancers/monitors', monitor],
      ['GET', '/zones/z/healthchecks', [check]],
      ['PATCH', '/zones/z/healthchecks/h1', check],
      ['POST', '/zones/z/healthchecks/preview', check],
      ['GET', '/Zones/z/HealthChecks/preview/p1', check],
    ];
    const missed = answers
      .filter(([method, path, result]) => leaks(shownToAgent(method, path, { success: true, result })))
      .map(([method, path]) => `${method} ${path}`);
    expect(missed).toEqual([]);
  });
});
