import { describe, expect, it } from 'vitest';
import { WardenError } from '@warden/core';
import { validateUpstreamRequest } from './request-validation.ts';

function refusal(input: unknown): string {
  try {
    validateUpstreamRequest(input);
  } catch (error) {
    expect(error).toBeInstanceOf(WardenError);
    expect((error as WardenError).code).toBe('invalid_request');
    return (error as WardenError).message;
  }
  throw new Error(`accepted ${JSON.stringify(input)}`);
}

describe('validateUpstreamRequest', () => {
  it('accepts the contract and normalizes the method', () => {
    expect(
      validateUpstreamRequest({
        method: 'post',
        path: '/zones/abc/dns_records',
        query: { page: 2, match: 'all', proxied: true, skip: undefined },
        body: { type: 'A', name: 'www', content: '192.0.2.1' },
      }),
    ).toEqual({
      method: 'POST',
      path: '/zones/abc/dns_records',
      query: { page: 2, match: 'all', proxied: true },
      body: { type: 'A', name: 'www', content: '192.0.2.1' },
    });
    expect(
      validateUpstreamRequest({
        method: 'PUT',
        path: '/accounts/a/storage/kv/namespaces/n/values/dir%2Ffile.txt',
        rawBody: 'hello',
        contentType: 'text/plain; charset=utf-8',
      }),
    ).toMatchObject({ rawBody: 'hello', contentType: 'text/plain; charset=utf-8' });
  });

  it.each([
    ['http://127.0.0.1:9/x', /starting with "\/"/],
    ['//127.0.0.1:9/x', /"\/\/"/],
    ['/zones//x', /"\/\/"/],
    ['/zones/../user/tokens', /"\." or "\.\."/],
    ['/zones/%2e%2e/user', /"\." or "\.\."/],
    ['/zones/a%2F..%2F..%2Fuser', /"\." or "\.\."/],
    ['/zones/a%5C..%5Cuser', /"\." or "\.\."/],
    ['/zones/./x', /"\." or "\.\."/],
    ['/zones\\..\\user', /percent-encoded/],
    ['/zones?x=1', /percent-encoded/],
    ['/zones#frag', /percent-encoded/],
    ['/zones/a b', /percent-encoded/],
    ['/zones/\r\nHost: evil', /control characters/],
    ['/zones/%0d%0aHost:%20evil', /control characters/],
    ['/zones/%zz', /percent-encoding/],
    ['/zones;x=1/dns_records', /matrix parameters/],
    ['/zones/a%3Bb', /encoded ";" or "\\"/],
    ['/zones/a%5Cb', /encoded ";" or "\\"/],
    ['/zönes', /percent-encoded/],
    ['zones', /starting with "\/"/],
    ['', /string/],
  ])('refuses the path %j', (path, message) => {
    expect(refusal({ method: 'GET', path })).toMatch(message);
  });

  it('names an unfilled placeholder copied from the spec, and tells how to fill it', () => {
    expect(refusal({ method: 'GET', path: '/zones/{zone_id}/dns_records' })).toBe(
      'cloudflare.request: path still has the placeholder {zone_id} from the API description; put the real value in its place, e.g. `/zones/${zoneId}/dns_records` (encodeURIComponent each value)',
    );
    expect(refusal({ method: 'GET', path: '/zones/z1/dns_records/{dns_record_id}' })).toMatch(
      /placeholder \{dns_record_id\}/,
    );
    // An encoded brace may be a real value (a KV key), so it is not taken for a placeholder.
    expect(
      validateUpstreamRequest({ method: 'GET', path: '/accounts/a/storage/kv/namespaces/n/values/%7Bk%7D' })
        .path,
    ).toBe('/accounts/a/storage/kv/namespaces/n/values/%7Bk%7D');
  });

  it('refuses headers, unknown fields and header injection through the content type', () => {
    expect(refusal({ method: 'GET', path: '/zones', headers: { host: 'evil' } })).toMatch(
      /"headers" is not a request field/,
    );
    expect(refusal({ method: 'GET', path: '/zones', url: 'http://evil' })).toMatch(/"url"/);
    expect(
      refusal({ method: 'POST', path: '/zones', contentType: 'application/json\r\nHost: evil' }),
    ).toMatch(/contentType/);
    expect(refusal({ method: 'POST', path: '/zones', contentType: 'text/plain; x="a\r\nb"' })).toMatch(
      /contentType/,
    );
  });

  it('refuses bad methods, queries and bodies', () => {
    expect(refusal({ method: 'TRACE', path: '/zones' })).toMatch(/method/);
    expect(refusal({ path: '/zones' })).toMatch(/method/);
    expect(refusal({ method: 'GET', path: '/zones', query: { page: { $gt: 1 } } })).toMatch(/query\.page/);
    expect(refusal({ method: 'GET', path: '/zones', query: { n: Number.NaN } })).toMatch(/query\.n/);
    expect(refusal({ method: 'GET', path: '/zones', query: 'page=2' })).toMatch(/query/);
    expect(refusal({ method: 'GET', path: '/zones', query: { 'a\nb': 1 } })).toMatch(/invalid key/);
    expect(refusal({ method: 'POST', path: '/zones', body: {}, rawBody: 'x' })).toMatch(/cannot both/);
    expect(refusal({ method: 'POST', path: '/zones', rawBody: 42 })).toMatch(/rawBody/);
    expect(refusal(null)).toMatch(/must be an object/);
    expect(refusal([])).toMatch(/must be an object/);
  });
});
