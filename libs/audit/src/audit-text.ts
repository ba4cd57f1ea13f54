/**
 * Audit records take any string an agent or Cloudflare can produce, but PostgreSQL refuses two
 * kinds of them: U+0000 in `text` and `jsonb`, and unpaired UTF-16 surrogates in `jsonb` (which
 * the driver would otherwise silently turn into U+FFFD in `text`). Such a string is stored
 * escaped, reversibly: `ESCAPE_MARK` followed by its JSON string literal, in which those code
 * points are `\u` escapes. A string that already starts with the mark is escaped too, so
 * `unescapeAuditText` gives back exactly the original. Every other string is stored as it is.
 */
export const ESCAPE_MARK = '\uFFFF';

function needsEscape(text: string): boolean {
  return text.includes('\u0000') || !text.isWellFormed() || text.startsWith(ESCAPE_MARK);
}

/** The form of `text` PostgreSQL accepts in `text` and `jsonb` columns. */
export function escapeAuditText(text: string): string {
  return needsEscape(text) ? ESCAPE_MARK + JSON.stringify(text) : text;
}

/** The original of a string `escapeAuditText` produced. */
export function unescapeAuditText(stored: string): string {
  if (!stored.startsWith(ESCAPE_MARK)) return stored;
  try {
    const original: unknown = JSON.parse(stored.slice(ESCAPE_MARK.length));
    return typeof original === 'string' ? original : stored;
  } catch {
    return stored;
  }
}

/**
 * Sets an own, enumerable property, whatever its name: `out[key] = …` with the key `__proto__`
 * (an ordinary key in parsed JSON) would set the copy's prototype or do nothing, and the key
 * would vanish from the record.
 */
function own(out: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Escapes every string (object keys included) of a JSON-like value. */
export function escapeAuditValue<T>(value: T): T {
  if (typeof value === 'string') return escapeAuditText(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => escapeAuditValue(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      own(out, escapeAuditText(k), escapeAuditValue(v));
    }
    return out as T;
  }
  return value;
}

/** The original of a value `escapeAuditValue` produced (object keys included). */
export function unescapeAuditValue<T>(value: T): T {
  if (typeof value === 'string') return unescapeAuditText(value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => unescapeAuditValue(v)) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      own(out, unescapeAuditText(k), unescapeAuditValue(v));
    }
    return out as T;
  }
  return value;
}
