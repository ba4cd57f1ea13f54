import { describe, expect, it } from 'vitest';
import { createOperationMatcher } from './operation-matcher.ts';
import type { OperationInfo } from './openapi-processor.ts';

function op(method: string, path: string): OperationInfo {
  return { method, path, tags: [], permissions: [] };
}

const match = createOperationMatcher([
  op('GET', '/zones'),
  op('GET', '/zones/{zone_id}'),
  op('GET', '/zones/{zone_id}/dns_records'),
  op('POST', '/zones/{zone_id}/dns_records'),
  op('GET', '/zones/{zone_id}/dns_records/export'),
  op('GET', '/zones/{zone_id}/dns_records/{dns_record_id}'),
  op('DELETE', '/zones/{zone_id}/dns_records/{dns_record_id}'),
  op('GET', '/accounts/{account_identifier}/workers/scripts/{script_name}'),
  op('GET', '/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}'),
  op('GET', '/files/{name}.json'),
]);

describe('createOperationMatcher', () => {
  it('maps a concrete path to its template and extracts the parameters', () => {
    expect(match('get', '/zones/abc/dns_records/rec1')).toEqual({
      operation: op('GET', '/zones/{zone_id}/dns_records/{dns_record_id}'),
      params: { zone_id: 'abc', dns_record_id: 'rec1' },
    });
    expect(match('GET', '/zones')?.operation.path).toBe('/zones');
    expect(match('GET', '/zones/abc/dns_records?page=2')?.operation.path).toBe(
      '/zones/{zone_id}/dns_records',
    );
  });

  it('prefers literal segments and falls back to parameters when the method only exists there', () => {
    expect(match('GET', '/zones/abc/dns_records/export')?.operation.path).toBe(
      '/zones/{zone_id}/dns_records/export',
    );
    expect(match('DELETE', '/zones/abc/dns_records/export')?.operation.path).toBe(
      '/zones/{zone_id}/dns_records/{dns_record_id}',
    );
  });

  it('handles differently named parameters, encoded values and mixed segments', () => {
    expect(match('GET', '/accounts/acc/workers/scripts/my-worker')?.params).toEqual({
      account_identifier: 'acc',
      script_name: 'my-worker',
    });
    expect(match('GET', '/accounts/a/storage/kv/namespaces/n/values/dir%2Ffile')?.params).toEqual({
      account_id: 'a',
      namespace_id: 'n',
      key_name: 'dir/file',
    });
    expect(match('GET', '/files/report.json')?.params).toEqual({ name: 'report' });
  });

  it('returns undefined for unknown paths and methods', () => {
    expect(match('GET', '/nope')).toBeUndefined();
    expect(match('PATCH', '/zones/abc')).toBeUndefined();
    expect(match('GET', '/zones/abc/dns_records/rec1/extra')).toBeUndefined();
  });
});
