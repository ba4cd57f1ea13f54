/**
 * Spellings of a secret, and the ways a reader turns them back, for the tests of echo scrubbing
 * (README "Audit trail": a credential is found as is and "with any of its characters escaped, in
 * any mix"). A test spells a secret the way a hostile answer could, and then asserts that no
 * reading of what came out of Warden holds it.
 */

export const hexOf = (n: number, width: number): string => n.toString(16).padStart(width, '0');
/** `\uXXXX` of one character (JSON, JavaScript). */
export const jsEscape = (c: string): string => `\\u${hexOf(c.charCodeAt(0), 4)}`;
/** `%XX` of one ASCII character. */
export const percentEscape = (c: string): string => `%${hexOf(c.charCodeAt(0), 2).toUpperCase()}`;
/** `&#xXX;` of one ASCII character. */
export const hexReference = (c: string): string => `&#x${hexOf(c.charCodeAt(0), 2)};`;

/** Named references of the ASCII characters the tests' secrets hold (name → character). */
export const NAMED_REFERENCES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  lowbar: '_',
  sol: '/',
  plus: '+',
  equals: '=',
  excl: '!',
  lpar: '(',
  rpar: ')',
};

/** JSON's and JavaScript's escapes: `\uXXXX`, `\\`, `\/`, `\"`, `\n`. */
const unJson = (s: string): string =>
  s
    .replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/\\([/"\\])/g, '$1')
    .replace(/\\n/g, '\n');
/** `%XX`, byte by byte (malformed UTF-8 is no reason to stop reading). */
const unPercent = (s: string): string =>
  s.replace(/%([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
/** Numeric references with or without their `;`, and the named ones above. */
const unReference = (s: string): string =>
  s.replace(
    /&(#[xX]([0-9a-fA-F]+)|#([0-9]+)|([a-z]+));?/g,
    (m, _e, h?: string, d?: string, name?: string) => {
      const code = h !== undefined ? parseInt(h, 16) : d !== undefined ? parseInt(d, 10) : undefined;
      if (code !== undefined) return code <= 0x10ffff ? String.fromCodePoint(code) : m;
      return NAMED_REFERENCES[name as string] ?? m;
    },
  );
/** UTF-16 read as single bytes: its NULs dropped. */
const unWide = (s: string): string => s.replaceAll('\u0000', '');

/** Every text a reader gets from `text` by undoing those spellings, in any order, `rounds` deep. */
export function secretDecodings(text: string, rounds = 4): string[] {
  const out = new Set([text]);
  for (let round = 0; round < rounds; round++) {
    for (const t of [...out]) for (const undo of [unJson, unPercent, unReference, unWide]) out.add(undo(t));
  }
  return [...out];
}

/** Whether `secret` can be read back from `text`. */
export const spellsSecret = (text: string, secret: string): boolean =>
  secretDecodings(text).some((d) => d.includes(secret));

/** The pieces of `secret` (`min` characters or more) that `text` spells in any reading. */
export function secretPieces(text: string, secret: string, min = 8): string[] {
  const found: string[] = [];
  const all = secretDecodings(text);
  const seen = (piece: string) => all.some((d) => d.includes(piece));
  for (let at = 0; at + min <= secret.length;) {
    if (!seen(secret.slice(at, at + min))) {
      at++;
      continue;
    }
    let len = min;
    while (at + len < secret.length && seen(secret.slice(at, at + len + 1))) len++;
    found.push(secret.slice(at, at + len));
    at += len;
  }
  return found;
}

/** A seeded generator of numbers in [0, 1) (mulberry32): random spellings that a failure can replay. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
