/**
 * Agent code that sends `requests` in turn with `cloudflare.request` and returns, for each,
 * `'sent <status> <result as JSON>'` (without the result when `result` is false) or, when it threw,
 * its error code (followed by its message when `message` is true).
 */
export function requestsInTurn(
  requests: ReadonlyArray<Record<string, unknown>>,
  options: { readonly result?: boolean; readonly message?: boolean } = {},
): string {
  const sent =
    options.result === false
      ? `'sent ' + res.status`
      : `'sent ' + res.status + ' ' + JSON.stringify(res.result)`;
  const failed = options.message ? `e.code + ' ' + e.message` : 'e.code';
  return `async () => { const out = []; for (const r of ${JSON.stringify(requests)}) { try { const res = await cloudflare.request(r); out.push(${sent}); } catch (e) { out.push(${failed}); } } return out; }`;
}
