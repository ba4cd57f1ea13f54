import { describe, expect, it } from 'vitest';
import { replaceSpans, secretFinder } from './secret-finder.ts';

const SECRET = 'Tk_4bcd/EfGh+ij=kl&m<n>o"p\'q\\r%s';
const finderOf = (...secrets: string[]) =>
  secretFinder({ forms: secrets.map((x) => Buffer.from(x)), secrets: secrets.map((x) => Buffer.from(x)) });
const finder = finderOf(SECRET);
const MARK = Buffer.from('#');
const scrub = (text: string) =>
  replaceSpans(Buffer.from(text), finder.find(Buffer.from(text)), MARK).toString();

const u = (text: string, upper = false) =>
  [...text]
    .map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
    .join('')
    [upper ? 'toUpperCase' : 'toString']();
const pct = (text: string, lower = false) =>
  [...Buffer.from(text)]
    .map((b) => `%${b.toString(16).padStart(2, '0')}`)
    .join('')
    [lower ? 'toLowerCase' : 'toUpperCase']();
const dec = (text: string) => [...text].map((c) => `&#${c.charCodeAt(0)};`).join('');
const hexRef = (text: string) => [...text].map((c) => `&#x${c.charCodeAt(0).toString(16)};`).join('');

describe('secretFinder', () => {
  it.each([
    ['as is', SECRET],
    ['JSON-escaped', JSON.stringify(SECRET).slice(1, -1)],
    ['all \\u escapes', u(SECRET)],
    ['\\u escapes with upper-case hex', u(SECRET, true).replaceAll('\\U', '\\u')],
    ['every byte %XX', pct(SECRET)],
    ['every byte %xx', pct(SECRET, true)],
    ['% spelled \\u0025', pct(SECRET).replaceAll('%', '\\u0025')],
    ['decimal references', dec(SECRET)],
    ['hex references', hexRef(SECRET)],
    ['named entities', SECRET.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('"', '&quot;')],
    [
      'half and half',
      u(SECRET.slice(0, 10)) +
        pct(SECRET.slice(10, 20)).replace(/%/g, '\\u0025') +
        JSON.stringify(SECRET.slice(20)).slice(1, -1),
    ],
  ])('finds the secret spelled %s, and replaces exactly its bytes', (_, spelled) => {
    expect(scrub(`{"a":"x ${spelled} y","b":"\\u00e9 %41 &amp;"}`)).toBe(
      '{"a":"x # y","b":"\\u00e9 %41 &amp;"}',
    );
  });

  it('keeps a surrogate pair whole in the run, and what is no escape as it was', () => {
    const secret = 'key-😀-0123456789';
    const f = finderOf(secret);
    const body = Buffer.from(`a ${'key-\\ud83d\\ude00-0123456789'} \\x \\u12 % %4 & &#; &#xZZ; &#1114112; b`);
    expect(replaceSpans(body, f.find(body), MARK).toString()).toBe(
      'a # \\x \\u12 % %4 & &#; &#xZZ; &#1114112; b',
    );
  });

  it('reads an escaped backslash as one character (\\\\u0054 is not T)', () => {
    const f = finderOf('TTTTTTTTTT');
    const body = Buffer.from('\\\\u0054TTTTTTTTT');
    expect(f.find(body)).toEqual([]);
  });

  it('returns bodies without a secret byte for byte, not UTF-8 ones included', () => {
    const body = Buffer.concat([
      Buffer.from('\\u0041 %41 &#65; '),
      Buffer.from([0xff, 0xfe, 0x00, 0x5c, 0x25, 0x26]),
    ]);
    expect(finder.find(body)).toEqual([]);
  });

  it('merges overlapping occurrences and reports runs in order', () => {
    const f = finderOf('abcdefgh', 'efghijkl');
    expect(f.find(Buffer.from('xxabcdefghijklyy abcdefgh'))).toEqual([
      [2, 14],
      [17, 25],
    ]);
  });

  it('reaches as far as a secret spelled one escape per character can', () => {
    expect(finder.reach).toBe(108 * Buffer.byteLength(SECRET));
  });
});
