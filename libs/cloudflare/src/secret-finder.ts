/**
 * Finds secrets in a body however the body spells them: as the bytes of one of the secret's
 * forms (`secretForms`: as is, Base64, hex, percent- and JSON-encoded, and UTF-16), and also in
 * the body read three other ways, in case a character of the secret is escaped:
 *
 * - JSON (and JavaScript) string escapes decoded: `\uXXXX` (surrogate pairs too), `\/`, `\"`,
 *   `\\`, `\n`…;
 * - those, then every `%XX` decoded (either case of hex digits): `%54k`, `\u00255A`;
 * - XML and HTML character references decoded: `&#x54;`, `&#84;`, `&amp;`, `&lt;`, `&gt;`,
 *   `&quot;`, `&apos;`.
 *
 * What is found is reported as runs of the body's own bytes (an escape that spells part of a
 * secret belongs to the run whole), so the caller replaces exactly those and returns the rest of
 * the body byte for byte. Each reading is one linear pass over the body, made only when the body
 * holds the byte that starts such an escape, and searched only when it decoded something.
 *
 * Not found: an encoding of an encoding (Base64 of percent-encoded text), Base64 broken into
 * lines, hex in mixed case, anything compressed or encrypted.
 */

/** A run `[start, end)` of a body's bytes. */
export type Span = readonly [start: number, end: number];

export interface SecretFinder {
  /** The runs of `body` that spell one of the secrets, sorted and merged. */
  find(body: Uint8Array): Span[];
  /**
   * The most bytes one occurrence can take in a body, its characters escaped one by one (a
   * range read keeps this margin on each side so a secret it cuts through is found whole).
   */
  readonly reach: number;
}

/** A reading: writes the decoded bytes to `out`, and where each came from to `origin`. */
type Decoder = (input: Uint8Array, out: Uint8Array, origin: Int32Array | null) => number;

const BACKSLASH = 0x5c;
const PERCENT = 0x25;
const AMPERSAND = 0x26;
const LOWER_U = 0x75;
const SEMICOLON = 0x3b;
const HASH = 0x23;

/** The longest escape of one character in any reading, in bytes (`&#x0010FFFF;`). */
const LONGEST_ESCAPE = 12;

export function secretFinder(needles: readonly Uint8Array[], longestSecretBytes: number): SecretFinder {
  const forms = [...needles].filter((n) => n.length > 0).sort((a, b) => b.length - a.length);
  const reach = Math.max(0, ...forms.map((n) => n.length), LONGEST_ESCAPE * longestSecretBytes);

  function searchInto(spans: [number, number][], view: Uint8Array, origin: () => Int32Array | null): void {
    const buffer = Buffer.from(view.buffer, view.byteOffset, view.length);
    let map: Int32Array | null | undefined;
    for (const needle of forms) {
      for (let at = buffer.indexOf(needle); at !== -1; at = buffer.indexOf(needle, at + 1)) {
        if (map === undefined) map = origin();
        if (map === null) spans.push([at, at + needle.length]);
        else spans.push([map[at] as number, endOf(map, at + needle.length, view.length)]);
      }
    }
  }

  return {
    reach,
    find(body) {
      const spans: [number, number][] = [];
      searchInto(spans, body, () => null);
      const json = body.includes(BACKSLASH) ? decoded(body, decodeJson) : null;
      if (json) searchInto(spans, json, () => origins(body, [decodeJson]));
      const base = json ?? body;
      const percent = base.includes(PERCENT) ? decoded(base, decodePercent) : null;
      if (percent) {
        const chain = json ? [decodeJson, decodePercent] : [decodePercent];
        searchInto(spans, percent, () => origins(body, chain));
      }
      const entities = body.includes(AMPERSAND) ? decoded(body, decodeEntities) : null;
      if (entities) searchInto(spans, entities, () => origins(body, [decodeEntities]));
      return merge(spans);
    },
  };
}

/** `body` with every span replaced by `marker` (spans sorted and merged, as `find` gives them). */
export function replaceSpans(body: Buffer, spans: readonly Span[], marker: Buffer): Buffer {
  if (spans.length === 0) return body;
  const parts: Buffer[] = [];
  let at = 0;
  for (const [start, end] of spans) {
    parts.push(body.subarray(at, start), marker);
    at = end;
  }
  parts.push(body.subarray(at));
  return Buffer.concat(parts);
}

/** The reading of `input`, or null when it decoded nothing (every escape decoded shortens it). */
function decoded(input: Uint8Array, decoder: Decoder): Uint8Array | null {
  const out = Buffer.allocUnsafe(input.length);
  const length = decoder(input, out, null);
  return length === input.length ? null : out.subarray(0, length);
}

/** Where each byte of `body` read through `chain` came from in `body` (one past the end last). */
function origins(body: Uint8Array, chain: readonly Decoder[]): Int32Array {
  let input = body;
  let map: Int32Array | null = null;
  for (const decoder of chain) {
    const out = Buffer.allocUnsafe(input.length);
    const origin = new Int32Array(input.length + 1);
    const length = decoder(input, out, origin);
    const composed = origin.subarray(0, length + 1);
    if (map) for (let k = 0; k <= length; k++) composed[k] = map[composed[k] as number] as number;
    map = composed;
    input = out.subarray(0, length);
  }
  return map as Int32Array;
}

/** The end in the body of an occurrence ending before byte `end` of a reading. */
function endOf(map: Int32Array, end: number, length: number): number {
  // The occurrence's last byte may be the first of a character its escape decoded to: the
  // run ends where the next escape (or byte) starts.
  const last = map[end - 1] as number;
  let k = end;
  while (k < length && map[k] === last) k++;
  return map[k] as number;
}

function merge(spans: [number, number][]): Span[] {
  if (spans.length <= 1) return spans;
  spans.sort((a, b) => a[0] - b[0] || b[1] - a[1]);
  const merged: [number, number][] = [];
  for (const span of spans) {
    const last = merged.at(-1);
    if (last && span[0] <= last[1]) last[1] = Math.max(last[1], span[1]);
    else merged.push([span[0], span[1]]);
  }
  return merged;
}

/** The value of one hex digit (either case), or -1. */
function hexDigit(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  return -1;
}

/** The value of four hex digits at `at`, or -1. */
function hex4(bytes: Uint8Array, at: number): number {
  if (at + 4 > bytes.length) return -1;
  let value = 0;
  for (let k = at; k < at + 4; k++) {
    const digit = hexDigit(bytes[k]);
    if (digit < 0) return -1;
    value = value * 16 + digit;
  }
  return value;
}

/** What an escape stands for: a code point (written as UTF-8), or one byte as it is. */
const escaped = { value: 0, byte: false };

/**
 * Reads the escape that starts at `at` (its first byte is the decoder's start byte): its length
 * in bytes, what it stands for left in `escaped`; 0 if it is no escape (the byte is kept).
 */
type EscapeReader = (input: Uint8Array, at: number) => number;

/** Where the next `start` byte is from `from` on (`input.length` if none). */
function nextStart(input: Uint8Array, start: number, from: number): number {
  // A few bytes in JavaScript first: escapes packed together (\u0054\u006b…) would otherwise cost
  // a native call each; then natively through a long run without one.
  const near = Math.min(input.length, from + 32);
  for (let k = from; k < near; k++) if (input[k] === start) return k;
  if (near === input.length) return near;
  const at = input.indexOf(start, near);
  return at === -1 ? input.length : at;
}

/** A decoder of the escapes that start with byte `start`, one pass over the input. */
function decoderOf(start: typeof BACKSLASH | typeof PERCENT | typeof AMPERSAND): Decoder {
  return (input, out, origin) => {
    const n = input.length;
    let w = 0;
    for (let i = 0; i < n;) {
      const at = nextStart(input, start, i);
      if (at > i) {
        // The bytes up to the next escape as they are (copied natively).
        if (at - i > 64) out.set(input.subarray(i, at), w);
        else for (let k = i; k < at; k++) out[w + k - i] = input[k] as number;
        if (origin) for (let k = 0; k < at - i; k++) origin[w + k] = i + k;
        w += at - i;
        i = at;
        if (i >= n) break;
      }
      // Direct calls (not one through a parameter) keep this call site monomorphic.
      const length =
        start === BACKSLASH
          ? jsonEscape(input, i)
          : start === PERCENT
            ? percentEscape(input, i)
            : entity(input, i);
      if (length === 0) {
        if (origin) origin[w] = i;
        out[w++] = start;
        i++;
        continue;
      }
      const from = w;
      const code = escaped.value;
      if (escaped.byte || code < 0x80) out[w++] = code;
      else if (code < 0x800) {
        out[w++] = 0xc0 | (code >> 6);
        out[w++] = 0x80 | (code & 0x3f);
      } else if (code < 0x10000) {
        out[w++] = 0xe0 | (code >> 12);
        out[w++] = 0x80 | ((code >> 6) & 0x3f);
        out[w++] = 0x80 | (code & 0x3f);
      } else {
        out[w++] = 0xf0 | (code >> 18);
        out[w++] = 0x80 | ((code >> 12) & 0x3f);
        out[w++] = 0x80 | ((code >> 6) & 0x3f);
        out[w++] = 0x80 | (code & 0x3f);
      }
      // Every byte an escape decodes to comes from the escape's first byte.
      if (origin) for (let k = from; k < w; k++) origin[k] = i;
      i += length;
    }
    if (origin) origin[w] = n;
    return w;
  };
}

function codePoint(value: number, length: number): number {
  escaped.value = value;
  escaped.byte = false;
  return length;
}

/** What `\x` stands for, by the byte after the backslash (-1: not a one-character escape). */
const SIMPLE_ESCAPES = new Int16Array(256).fill(-1);
for (const [escape, value] of [
  ['"', 0x22],
  ['\\', 0x5c],
  ['/', 0x2f],
  ['b', 0x08],
  ['f', 0x0c],
  ['n', 0x0a],
  ['r', 0x0d],
  ['t', 0x09],
] as const)
  SIMPLE_ESCAPES[escape.charCodeAt(0)] = value;

/** JSON string escapes, wherever they are; an unknown escape or a lone surrogate is kept. */
const jsonEscape: EscapeReader = (input, at) => {
  const next = input[at + 1];
  if (next === undefined) return 0;
  const simple = SIMPLE_ESCAPES[next] as number;
  if (simple >= 0) return codePoint(simple, 2);
  if (next !== LOWER_U) return 0;
  const high = hex4(input, at + 2);
  if (high >= 0xd800 && high <= 0xdbff && input[at + 6] === BACKSLASH && input[at + 7] === LOWER_U) {
    const low = hex4(input, at + 8);
    if (low >= 0xdc00 && low <= 0xdfff)
      return codePoint(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00), 12);
  }
  return high >= 0 && (high < 0xd800 || high > 0xdfff) ? codePoint(high, 6) : 0;
};

/** Every `%XX` (either case), as the byte it stands for; a `%` without two hex digits is kept. */
const percentEscape: EscapeReader = (input, at) => {
  const high = hexDigit(input[at + 1]);
  const low = high >= 0 ? hexDigit(input[at + 2]) : -1;
  if (low < 0) return 0;
  escaped.value = high * 16 + low;
  escaped.byte = true;
  return 3;
};

const NAMED_ENTITIES: ReadonlyArray<readonly [Buffer, number]> = [
  [Buffer.from('amp;'), 0x26],
  [Buffer.from('lt;'), 0x3c],
  [Buffer.from('gt;'), 0x3e],
  [Buffer.from('quot;'), 0x22],
  [Buffer.from('apos;'), 0x27],
];

/** `&#x…;` and `&#…;` (up to 8 digits) and the five XML entities; any other `&` is kept. */
const entity: EscapeReader = (input, at) => {
  if (input[at + 1] !== HASH) {
    for (const [name, value] of NAMED_ENTITIES) {
      if (name.equals(input.subarray(at + 1, at + 1 + name.length))) return codePoint(value, 1 + name.length);
    }
    return 0;
  }
  const hex = input[at + 2] === 0x78 || input[at + 2] === 0x58;
  const base = hex ? 16 : 10;
  let j = at + (hex ? 3 : 2);
  let value = 0;
  for (let digits = 0; digits < 8; j++, digits++) {
    const digit = hexDigit(input[j]);
    if (digit < 0 || digit >= base) break;
    value = value * base + digit;
  }
  const valid = j > at + (hex ? 3 : 2) && input[j] === SEMICOLON && value > 0 && value <= 0x10ffff;
  return valid && (value < 0xd800 || value > 0xdfff) ? codePoint(value, j + 1 - at) : 0;
};

const decodeJson = decoderOf(BACKSLASH);
const decodePercent = decoderOf(PERCENT);
const decodeEntities = decoderOf(AMPERSAND);
