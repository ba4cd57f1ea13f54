import { CHARS_PER_TOKEN } from '@warden/codemode';
import type { TruncationInfo } from './ports.ts';

/** A result cut to the result budget, as `execute_tool` and MCP's `_meta` return it. */
export function truncationJson(truncated: TruncationInfo) {
  return {
    original_chars: truncated.originalChars,
    original_tokens: truncated.originalTokens,
    kept_chars: truncated.keptChars,
  };
}

/** The line that tells an agent its result was cut, and what to do for the rest. */
export function truncationNote(truncated: TruncationInfo): string {
  const keptTokens = Math.ceil(truncated.keptChars / CHARS_PER_TOKEN);
  return `[warden] the result was cut to fit the result budget: ${truncated.keptChars} of ${truncated.originalChars} characters of JSON kept (about ${keptTokens} of ${truncated.originalTokens} tokens); "…[N more …]" marks show what was left out. Return less (filter, pick fields, paginate) to see the rest.`;
}
