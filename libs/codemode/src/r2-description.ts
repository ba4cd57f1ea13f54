// Loaded by the sandbox children (search), which may read only this package: no imports.
/**
 * `r2` in execute: the R2 object data plane (the S3-compatible endpoint), signed by the host.
 * What `cloudflare_search` shows as `spec.r2`; kept short (it is read, not the tool definitions).
 */
export const R2_DESCRIPTION = {
  summary:
    'r2 objects in execute (host-signed S3 API; token needs Workers R2 Storage Read/Write). Every call takes bucket, and accountId (default: the call account) and jurisdiction (default|eu|fedramp) optionally. Policy sees GET/PUT/DELETE on r2://bucket/key (keys in Unicode NFC; r2://account:<id>/bucket/key for one account, r2://account:<id>/jurisdiction:eu/bucket/key for one jurisdiction).',
  methods: {
    'r2.list({bucket, prefix?, delimiter?, cursor?, limit?})':
      '{objects: [{key, size, etag, uploaded}], delimitedPrefixes, truncated, cursor?, withheld? (entries policy hides)}',
    'r2.head({bucket, key})': '{key, size, etag, uploaded, contentType} or null',
    "r2.get({bucket, key, as?: 'text'|'json'|'base64', range?: {offset?, length?} | {suffix}})":
      '{key, size, etag, uploaded, contentType, range?, body} or null',
    "r2.put({bucket, key, body, contentType?, as?: 'text'|'json'|'base64'})": '{key, size, etag}',
    'r2.delete({bucket, key})': '{key, deleted: true}',
  },
} as const;
