/**
 * Finds secrets in a body however the body spells them: as the bytes of one of the secret's
 * forms (`secretForms`: as is, Base64, hex, percent- and JSON-encoded, and UTF-16), and also in
 * the body read three other ways, in case characters of the secret are escaped, in any mix:
 *
 * - JSON and JavaScript string escapes decoded: `\uXXXX` (surrogate pairs too), `\u{…}`, `\xXX`, `\/`, `\"`,
 *   `\\`, `\n`…;
 * - those, then in one pass every `%XX` (either case of hex digits) and every XML or HTML
 *   character reference (`&#x54;`, `&#84;`, with or without `;` and with any number of leading
 *   zeros; the named references of ASCII characters: `&amp;`, `&lowbar;`, `&sol;`, `&fjlig;`…): `%54k`,
 *   `\u00255A`, `\u005A&#x78;%39`;
 * - the percent-escapes and references of the body as it is (its backslashes left alone).
 *
 * Each reading is also searched for the secrets as that reading decodes them, so a secret that
 * itself holds an escape (`%41`, `&lt;`) is found however its other characters are spelled.
 *
 * What is found is reported as runs of the body's own bytes (an escape that spells part of a
 * secret belongs to the run whole), so the caller replaces exactly those and returns the rest of
 * the body byte for byte. Each reading is one linear pass over the body, made only when the body
 * holds the byte that starts such an escape, and searched only when it decoded something.
 *
 * Not found: an encoding of an encoding (Base64 of percent-encoded text, a reference to a `%`),
 * Base64 broken into lines, hex in mixed case, anything compressed or encrypted.
 */

/** A run `[start, end)` of a body's bytes. */
export type Span = readonly [start: number, end: number];

export interface SecretFinder {
  /**
   * The runs of `body` that spell one of the secrets, sorted and merged. `cut`: the body starts
   * part-way into something longer (a range read), so a run of backslashes at its start may be
   * cut too and is read both ways.
   */
  find(body: Uint8Array, options?: { readonly cut?: boolean }): Span[];
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

/**
 * The most bytes one byte of a secret takes in the spellings a range read must find whole: the
 * longest named reference (`&DiacriticalGrave;`, 18 bytes) with each of its characters
 * `\u`-escaped. References padded with leading zeros beyond that are found in a whole body only.
 */
const LONGEST_ESCAPE = 108;

export interface Needles {
  /** Every form of the secrets, searched in every reading. */
  readonly forms: readonly Uint8Array[];
  /**
   * Each secret in UTF-16, little- and big-endian, searched in every reading. A body in one order
   * also holds the other order's form one byte off, across a neighbouring character's zero byte:
   * where both are found so, the one at an even offset is the secret.
   */
  readonly wide?: ReadonlyArray<readonly [le: Uint8Array, be: Uint8Array]>;
  /** The secrets as they are: each reading also searches for them as it decodes them. */
  readonly secrets: readonly Uint8Array[];
}

export function secretFinder(needles: Needles): SecretFinder {
  const longestFirst = (list: Iterable<Uint8Array>) =>
    [...list].filter((n) => n.length > 0).sort((a, b) => b.length - a.length);
  const forms = longestFirst(needles.forms);
  const wide = needles.wide ?? [];
  /** The forms, and the secrets as `chain` decodes them. */
  const formsFor = (chain: readonly Decoder[]) =>
    longestFirst([
      ...forms,
      ...needles.secrets.map((secret) =>
        chain.reduce<Uint8Array>((text, d) => decoded(text, d) ?? text, secret),
      ),
    ]);
  const jsonForms = formsFor([decodeJson]);
  const referenceForms = formsFor([decodeReferences]);
  const bothForms = formsFor([decodeJson, decodeReferences]);
  const longestSecret = Math.max(0, ...needles.secrets.map((secret) => secret.length));
  const reach = Math.max(
    0,
    ...forms.map((n) => n.length),
    ...wide.map(([le]) => le.length),
    LONGEST_ESCAPE * longestSecret,
  );

  function searchInto(
    spans: [number, number][],
    view: Uint8Array,
    sorted: readonly Uint8Array[],
    origin: () => Int32Array | null,
  ): void {
    const buffer = Buffer.from(view.buffer, view.byteOffset, view.length);
    let map: Int32Array | null | undefined;
    const push = (at: number, length: number) => {
      if (map === undefined) map = origin();
      if (map === null) spans.push([at, at + length]);
      else spans.push([map[at] as number, endOf(map, at + length, view.length)]);
    };
    for (const needle of sorted) {
      for (let at = buffer.indexOf(needle); at !== -1; at = buffer.indexOf(needle, at + 1))
        push(at, needle.length);
    }
    for (const [le, be] of wide) {
      const les = positions(buffer, le);
      const bes = positions(buffer, be);
      for (const at of les) if (at % 2 === 0 || !bes.has(at - 1)) push(at, le.length);
      for (const at of bes) if (at % 2 === 0 || !les.has(at + 1)) push(at, be.length);
    }
  }

  const hasReferences = (bytes: Uint8Array) => bytes.includes(PERCENT) || bytes.includes(AMPERSAND);

  const finder: SecretFinder = {
    reach,
    find(body, options = {}) {
      const spans: [number, number][] = [];
      // Which of a cut run of backslashes escape the next byte depends on bytes not read: the
      // body is also read from its second byte (the other parity of the run).
      if (options.cut && body[0] === BACKSLASH) {
        for (const [a, b] of finder.find(body.subarray(1))) spans.push([a + 1, b + 1]);
      }
      searchInto(spans, body, forms, () => null);
      const json = body.includes(BACKSLASH) ? decoded(body, decodeJson) : null;
      if (json) {
        searchInto(spans, json, jsonForms, () => origins(body, [decodeJson]));
        const both = hasReferences(json) ? decoded(json, decodeReferences) : null;
        if (both) searchInto(spans, both, bothForms, () => origins(body, [decodeJson, decodeReferences]));
      }
      const references = hasReferences(body) ? decoded(body, decodeReferences) : null;
      if (references) searchInto(spans, references, referenceForms, () => origins(body, [decodeReferences]));
      return merge(spans);
    },
  };
  return finder;
}

/** Where `needle` starts in `buffer`. */
function positions(buffer: Buffer, needle: Uint8Array): Set<number> {
  const found = new Set<number>();
  for (let at = buffer.indexOf(needle); at !== -1; at = buffer.indexOf(needle, at + 1)) found.add(at);
  return found;
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
const escaped = { value: 0, byte: false, then: 0 };

/**
 * Reads the escape that starts at `at` (its first byte is one the decoder starts escapes
 * with): its length in bytes, what it stands for left in `escaped`; 0 if it is no escape (the
 * byte is kept).
 */
type EscapeReader = (input: Uint8Array, at: number) => number;

/** The escape at `at`, by its first byte (direct calls keep the decoders' call site monomorphic). */
function readEscape(input: Uint8Array, at: number): number {
  const c = input[at];
  return c === BACKSLASH
    ? jsonEscape(input, at)
    : c === PERCENT
      ? percentEscape(input, at)
      : reference(input, at);
}

/** A decoder of the escapes that start with byte `first` or `second`, one pass over the input. */
function decoderOf(first: number, second: number): Decoder {
  return (input, out, origin) => {
    const n = input.length;
    let w = 0;
    // The next `first` and `second` at or after the current byte, looked for again only once
    // passed: a byte the input lacks is looked for once, not once per escape.
    let nextFirst = -1;
    let nextSecond = second === first ? n : -1;
    for (let i = 0; i < n;) {
      if (nextFirst < i) nextFirst = nextByte(input, first, i);
      if (nextSecond < i) nextSecond = nextByte(input, second, i);
      const at = Math.min(nextFirst, nextSecond);
      if (at > i) {
        // The bytes up to the next escape as they are (a long run copied natively).
        if (at - i > 64) out.set(input.subarray(i, at), w);
        else for (let k = i; k < at; k++) out[w + k - i] = input[k] as number;
        if (origin) for (let k = 0; k < at - i; k++) origin[w + k] = i + k;
        w += at - i;
        i = at;
        if (i >= n) break;
      }
      const length = readEscape(input, i);
      if (length === 0) {
        if (origin) origin[w] = i;
        out[w++] = input[i] as number;
        i++;
        continue;
      }
      const from = w;
      const code = escaped.value;
      if (escaped.then !== 0) {
        // A reference to two ASCII characters (`&fjlig;`).
        out[w++] = code;
        out[w++] = escaped.then;
      } else if (escaped.byte || code < 0x80) out[w++] = code;
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

const HEX_DIGIT = new Uint8Array(256);
for (const c of '0123456789abcdefABCDEF') HEX_DIGIT[c.charCodeAt(0)] = 1;
const LETTER = new Uint8Array(256);
for (const c of 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ') LETTER[c.charCodeAt(0)] = 1;

/** Whether the `byte` at `k` may start an escape, by the bytes after it (cheaply, not surely). */
function mayEscape(input: Uint8Array, k: number, byte: number): boolean {
  const next = input[k + 1] ?? 0;
  const then = input[k + 2] ?? 0;
  if (byte === PERCENT) return HEX_DIGIT[next] === 1 && HEX_DIGIT[then] === 1;
  if (byte === BACKSLASH)
    return next === LOWER_U
      ? HEX_DIGIT[then] === 1 || then === 0x7b
      : (SIMPLE_ESCAPES[next] as number) >= 0 || next === 0x78 || isOctal(next);
  if (next === HASH) return then === 0x78 || then === 0x58 || (then >= 0x30 && then <= 0x39);
  return LETTER[next] === 1;
}

/**
 * Where the next `byte` that may start an escape is, from `from` on (`input.length` if none).
 * Bytes are read in JavaScript in short stretches (escapes packed together, or a body of
 * near-misses, would otherwise cost a native call each) and long runs without `byte` natively.
 */
function nextByte(input: Uint8Array, byte: number, from: number): number {
  const n = input.length;
  let k = from;
  for (;;) {
    const near = Math.min(n, k + 32);
    for (; k < near; k++) if (input[k] === byte && mayEscape(input, k, byte)) return k;
    if (k >= n) return n;
    const at = input.indexOf(byte, k);
    if (at === -1) return n;
    k = at;
  }
}

function codePoint(value: number, length: number, then = 0): number {
  escaped.value = value;
  escaped.byte = false;
  escaped.then = then;
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
  ['v', 0x0b],
] as const)
  SIMPLE_ESCAPES[escape.charCodeAt(0)] = value;

/**
 * A JSON or JavaScript string escape: `\n`…, `\uXXXX` (a surrogate pair as one), `\u{…}`,
 * `\xXX` and legacy octal; a lone surrogate, or a backslash before any other character, is none.
 */
const jsonEscape: EscapeReader = (input, at) => {
  const next = input[at + 1];
  if (next === undefined) return 0;
  const simple = SIMPLE_ESCAPES[next] as number;
  if (simple >= 0) return codePoint(simple, 2);
  if (next === LOWER_U) {
    if (input[at + 2] === 0x7b) {
      let j = at + 3;
      let value = 0;
      for (; j < input.length && hexDigit(input[j]) >= 0; j++)
        value = Math.min(value * 16 + hexDigit(input[j]), 0x110000);
      return j > at + 3 && input[j] === 0x7d && value <= 0x10ffff && (value < 0xd800 || value > 0xdfff)
        ? codePoint(value, j + 1 - at)
        : 0;
    }
    const high = hex4(input, at + 2);
    if (high >= 0xd800 && high <= 0xdbff && input[at + 6] === BACKSLASH && input[at + 7] === LOWER_U) {
      const low = hex4(input, at + 8);
      if (low >= 0xdc00 && low <= 0xdfff)
        return codePoint(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00), 12);
    }
    return high >= 0 && (high < 0xd800 || high > 0xdfff) ? codePoint(high, 6) : 0;
  }
  if (next === 0x78) {
    const high = hexDigit(input[at + 2]);
    const low = high >= 0 ? hexDigit(input[at + 3]) : -1;
    return low >= 0 ? codePoint(high * 16 + low, 4) : 0;
  }
  if (next >= 0x30 && next <= 0x37) {
    let j = at + 1;
    let value = 0;
    while (j < at + 4 && isOctal(input[j]) && value * 8 + (input[j] as number) - 0x30 <= 0xff) {
      value = value * 8 + (input[j] as number) - 0x30;
      j++;
    }
    return codePoint(value, j - at);
  }
  // A backslash before any other character (`\Z`, which JavaScript reads as `Z`) is not read.
  return 0;
};

function isOctal(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x37;
}

/** `%XX` (either case), as the byte it stands for; a `%` without two hex digits is none. */
function percentEscape(input: Uint8Array, at: number): number {
  const high = hexDigit(input[at + 1]);
  const low = high >= 0 ? hexDigit(input[at + 2]) : -1;
  if (low < 0) return 0;
  escaped.value = high * 16 + low;
  escaped.byte = true;
  escaped.then = 0;
  return 3;
}

/** The named references of HTML for ASCII characters (and XML's five), by name. */
const NAMED_REFERENCES = new Map<string, number>(
  Object.entries({
    Tab: 9,
    NewLine: 10,
    excl: 0x21,
    quot: 0x22,
    QUOT: 0x22,
    num: 0x23,
    dollar: 0x24,
    percnt: 0x25,
    amp: 0x26,
    AMP: 0x26,
    apos: 0x27,
    lpar: 0x28,
    rpar: 0x29,
    ast: 0x2a,
    midast: 0x2a,
    plus: 0x2b,
    comma: 0x2c,
    period: 0x2e,
    sol: 0x2f,
    colon: 0x3a,
    semi: 0x3b,
    lt: 0x3c,
    LT: 0x3c,
    equals: 0x3d,
    gt: 0x3e,
    GT: 0x3e,
    quest: 0x3f,
    commat: 0x40,
    lsqb: 0x5b,
    lbrack: 0x5b,
    bsol: 0x5c,
    rsqb: 0x5d,
    rbrack: 0x5d,
    Hat: 0x5e,
    lowbar: 0x5f,
    UnderBar: 0x5f,
    grave: 0x60,
    DiacriticalGrave: 0x60,
    lcub: 0x7b,
    lbrace: 0x7b,
    verbar: 0x7c,
    vert: 0x7c,
    VerticalLine: 0x7c,
    rcub: 0x7d,
    rbrace: 0x7d,
  }),
);
/** Named references HTML reads without their `;`. */
const LEGACY_REFERENCES = new Set(['amp', 'AMP', 'lt', 'LT', 'gt', 'GT', 'quot', 'QUOT']);
const LONGEST_NAME = 16;

function isLetter(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a));
}

/**
 * A character reference: `&#…` or `&#x…` (any number of digits, `;` optional as HTML reads it)
 * or a named one (`;` required but for the few HTML reads without); anything else is none.
 */
function reference(input: Uint8Array, at: number): number {
  if (input[at + 1] !== HASH) {
    let j = at + 1;
    while (j - at - 1 < LONGEST_NAME && (isLetter(input[j]) || (j > at + 1 && isDigit(input[j])))) j++;
    if (j === at + 1) return 0;
    const closed = input[j] === SEMICOLON;
    let name = '';
    for (let k = at + 1; k < j; k++) name += String.fromCharCode(input[k] as number);
    if (name === 'fjlig' && closed) return codePoint(0x66, j - at + 1, 0x6a);
    const value = NAMED_REFERENCES.get(name);
    if (value === undefined || (!closed && !LEGACY_REFERENCES.has(name))) return 0;
    return codePoint(value, j - at + (closed ? 1 : 0));
  }
  const hex = input[at + 2] === 0x78 || input[at + 2] === 0x58;
  const base = hex ? 16 : 10;
  const first = at + (hex ? 3 : 2);
  let j = first;
  let value = 0;
  for (; j < input.length; j++) {
    const digit = hexDigit(input[j]);
    if (digit < 0 || digit >= base) break;
    // Past the last code point it stays past it, however many digits follow.
    value = Math.min(value * base + digit, 0x110000);
  }
  if (j === first || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) return 0;
  return codePoint(value, j - at + (input[j] === SEMICOLON ? 1 : 0));
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

const decodeJson = decoderOf(BACKSLASH, BACKSLASH);
/** Percent-escapes and character references, in one pass. */
const decodeReferences = decoderOf(PERCENT, AMPERSAND);
