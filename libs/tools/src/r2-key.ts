import { canonicalSegment } from './canonical-path.ts';

/**
 * R2 object keys as policy sees them. R2 NFC-normalizes key names before storing ("Unicode
 * interoperability", https://developers.cloudflare.com/r2/reference/unicode-interoperability/):
 * `café` written with a precomposed `é` and with `e` + U+0301 is one object. Policy therefore
 * matches keys, and the literal segments of `r2://` rules, in NFC, and the R2 gateway sends the
 * very NFC key it checked, so no spelling of a key reaches an object a rule was meant to cover.
 */

/** Every byte but RFC 3986's unreserved characters percent-encoded. */
function encodeStrict(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** One key segment (decoded text, no `/`) in the canonical spelling of policy paths, NFC first. */
export function r2KeySegment(segment: string): string {
  const encoded = encodeStrict(segment.normalize('NFC'));
  return canonicalSegment(encoded) ?? encoded;
}

/**
 * A literal segment of an `r2://` rule (already in canonical spelling) in the form key segments
 * are matched in: NFC. Undecodable text is left as it is (`patternProblem` refuses it at PUT).
 */
export function r2PatternLiteral(canonical: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(canonical);
  } catch {
    return canonical;
  }
  return decoded.normalize('NFC') === decoded ? canonical : r2KeySegment(decoded);
}
