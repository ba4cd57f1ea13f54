/** 'admitted', or a refusal's reason, wait and message: a failing assertion shows what happened. */
export function verdict(result: {
  allowed: boolean;
  reason?: string;
  retryAfterMs?: number;
  message?: string;
}): string {
  return result.allowed
    ? 'admitted'
    : `refused (${result.reason}, ${result.retryAfterMs} ms${result.message ? `: ${result.message}` : ''})`;
}
