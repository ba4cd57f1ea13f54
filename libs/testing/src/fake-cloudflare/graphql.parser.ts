/**
 * A small GraphQL reader: operations, variables with defaults, fields with aliases and
 * arguments, named and inline fragments, @include/@skip. Enough for analytics queries.
 */

export type GqlValue =
  | { readonly kind: 'variable'; readonly name: string }
  | { readonly kind: 'scalar'; readonly value: string | number | boolean | null }
  | { readonly kind: 'enum'; readonly value: string }
  | { readonly kind: 'list'; readonly values: readonly GqlValue[] }
  | { readonly kind: 'object'; readonly fields: Readonly<Record<string, GqlValue>> };

export interface GqlDirective {
  readonly name: string;
  readonly args: Readonly<Record<string, GqlValue>>;
}

export type GqlSelection =
  | {
      readonly kind: 'field';
      readonly alias: string | null;
      readonly name: string;
      readonly args: Readonly<Record<string, GqlValue>>;
      readonly directives: readonly GqlDirective[];
      readonly selections: readonly GqlSelection[] | null;
    }
  | { readonly kind: 'spread'; readonly name: string; readonly directives: readonly GqlDirective[] }
  | {
      readonly kind: 'inline';
      readonly directives: readonly GqlDirective[];
      readonly selections: readonly GqlSelection[];
    };

export interface GqlOperation {
  readonly type: 'query' | 'mutation' | 'subscription';
  readonly name: string | null;
  readonly variableDefaults: Readonly<Record<string, GqlValue>>;
  readonly variableNames: readonly string[];
  readonly selections: readonly GqlSelection[];
}

export interface GqlDocument {
  readonly operations: readonly GqlOperation[];
  readonly fragments: ReadonlyMap<string, readonly GqlSelection[]>;
}

export class GqlSyntaxError extends Error {
  override name = 'GqlSyntaxError';
}

type Token =
  | { readonly kind: 'punct'; readonly value: string; readonly at: number }
  | { readonly kind: 'name'; readonly value: string; readonly at: number }
  | { readonly kind: 'number'; readonly value: string; readonly float: boolean; readonly at: number }
  | { readonly kind: 'string'; readonly value: string; readonly at: number }
  | { readonly kind: 'eof'; readonly at: number };

const PUNCT = new Set(['!', '$', '(', ')', ':', '=', '@', '[', ']', '{', '}', '|', '&']);

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === ',' || c === '\ufeff') {
      i++;
    } else if (c === '#') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (source.startsWith('...', i)) {
      tokens.push({ kind: 'punct', value: '...', at: i });
      i += 3;
    } else if (PUNCT.has(c)) {
      tokens.push({ kind: 'punct', value: c, at: i });
      i++;
    } else if (/[_A-Za-z]/.test(c)) {
      const m = /^[_A-Za-z][_0-9A-Za-z]*/.exec(source.slice(i))!;
      tokens.push({ kind: 'name', value: m[0], at: i });
      i += m[0].length;
    } else if (/[-0-9]/.test(c)) {
      const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(source.slice(i));
      if (!m) throw new GqlSyntaxError(`Syntax Error: invalid number at ${i}`);
      tokens.push({ kind: 'number', value: m[0], float: m[1] !== undefined || m[2] !== undefined, at: i });
      i += m[0].length;
    } else if (source.startsWith('"""', i)) {
      const end = source.indexOf('"""', i + 3);
      if (end < 0) throw new GqlSyntaxError(`Syntax Error: unterminated string at ${i}`);
      tokens.push({ kind: 'string', value: source.slice(i + 3, end), at: i });
      i = end + 3;
    } else if (c === '"') {
      let j = i + 1;
      let value = '';
      for (;;) {
        const d = source[j];
        if (d === undefined || d === '\n')
          throw new GqlSyntaxError(`Syntax Error: unterminated string at ${i}`);
        if (d === '"') break;
        if (d === '\\') {
          const e = source[j + 1];
          const simple: Record<string, string> = {
            '"': '"',
            '\\': '\\',
            '/': '/',
            b: '\b',
            f: '\f',
            n: '\n',
            r: '\r',
            t: '\t',
          };
          if (e === 'u') {
            value += String.fromCharCode(parseInt(source.slice(j + 2, j + 6), 16));
            j += 6;
            continue;
          }
          if (e === undefined || simple[e] === undefined)
            throw new GqlSyntaxError(`Syntax Error: bad escape at ${j}`);
          value += simple[e];
          j += 2;
          continue;
        }
        value += d;
        j++;
      }
      tokens.push({ kind: 'string', value, at: i });
      i = j + 1;
    } else {
      throw new GqlSyntaxError(`Syntax Error: unexpected character "${c}" at ${i}`);
    }
  }
  tokens.push({ kind: 'eof', at: source.length });
  return tokens;
}

class Parser {
  readonly #tokens: Token[];
  #i = 0;

  constructor(source: string) {
    this.#tokens = tokenize(source);
  }

  #peek(): Token {
    return this.#tokens[this.#i]!;
  }

  #next(): Token {
    const t = this.#tokens[this.#i]!;
    if (t.kind !== 'eof') this.#i++;
    return t;
  }

  #isPunct(value: string): boolean {
    const t = this.#peek();
    return t.kind === 'punct' && t.value === value;
  }

  #expectPunct(value: string): void {
    const t = this.#next();
    if (t.kind !== 'punct' || t.value !== value) {
      throw new GqlSyntaxError(`Syntax Error: expected "${value}" at ${t.at}`);
    }
  }

  #name(): string {
    const t = this.#next();
    if (t.kind !== 'name') throw new GqlSyntaxError(`Syntax Error: expected a name at ${t.at}`);
    return t.value;
  }

  document(): GqlDocument {
    const operations: GqlOperation[] = [];
    const fragments = new Map<string, readonly GqlSelection[]>();
    while (this.#peek().kind !== 'eof') {
      if (this.#isPunct('{')) {
        operations.push({
          type: 'query',
          name: null,
          variableDefaults: {},
          variableNames: [],
          selections: this.#selectionSet(),
        });
        continue;
      }
      const keyword = this.#name();
      if (keyword === 'fragment') {
        const name = this.#name();
        if (this.#name() !== 'on')
          throw new GqlSyntaxError('Syntax Error: expected "on" in a fragment definition');
        this.#name();
        this.#directives();
        fragments.set(name, this.#selectionSet());
      } else if (keyword === 'query' || keyword === 'mutation' || keyword === 'subscription') {
        const name = this.#peek().kind === 'name' ? this.#name() : null;
        const { defaults, names } = this.#isPunct('(')
          ? this.#variableDefinitions()
          : { defaults: {}, names: [] };
        this.#directives();
        operations.push({
          type: keyword,
          name,
          variableDefaults: defaults,
          variableNames: names,
          selections: this.#selectionSet(),
        });
      } else {
        throw new GqlSyntaxError(`Syntax Error: unexpected "${keyword}"`);
      }
    }
    if (operations.length === 0) throw new GqlSyntaxError('Syntax Error: the document has no operation');
    return { operations, fragments };
  }

  #variableDefinitions(): { defaults: Record<string, GqlValue>; names: string[] } {
    const defaults: Record<string, GqlValue> = {};
    const names: string[] = [];
    this.#expectPunct('(');
    while (!this.#isPunct(')')) {
      this.#expectPunct('$');
      const name = this.#name();
      names.push(name);
      this.#expectPunct(':');
      this.#type();
      if (this.#isPunct('=')) {
        this.#next();
        defaults[name] = this.#value(true);
      }
      this.#directives();
    }
    this.#expectPunct(')');
    return { defaults, names };
  }

  #type(): void {
    if (this.#isPunct('[')) {
      this.#next();
      this.#type();
      this.#expectPunct(']');
    } else {
      this.#name();
    }
    if (this.#isPunct('!')) this.#next();
  }

  #selectionSet(): GqlSelection[] {
    this.#expectPunct('{');
    const selections: GqlSelection[] = [];
    while (!this.#isPunct('}')) {
      if (this.#peek().kind === 'eof')
        throw new GqlSyntaxError('Syntax Error: unexpected end of the document');
      selections.push(this.#selection());
    }
    this.#expectPunct('}');
    return selections;
  }

  #selection(): GqlSelection {
    if (this.#isPunct('...')) {
      this.#next();
      const t = this.#peek();
      if (t.kind === 'name' && t.value !== 'on') {
        const name = this.#name();
        return { kind: 'spread', name, directives: this.#directives() };
      }
      if (t.kind === 'name') {
        this.#next();
        this.#name();
      }
      const directives = this.#directives();
      return { kind: 'inline', directives, selections: this.#selectionSet() };
    }
    let name = this.#name();
    let alias: string | null = null;
    if (this.#isPunct(':')) {
      this.#next();
      alias = name;
      name = this.#name();
    }
    const args = this.#isPunct('(') ? this.#arguments(false) : {};
    const directives = this.#directives();
    const selections = this.#isPunct('{') ? this.#selectionSet() : null;
    return { kind: 'field', alias, name, args, directives, selections };
  }

  #arguments(constant: boolean): Record<string, GqlValue> {
    const args: Record<string, GqlValue> = {};
    this.#expectPunct('(');
    while (!this.#isPunct(')')) {
      const name = this.#name();
      this.#expectPunct(':');
      args[name] = this.#value(constant);
    }
    this.#expectPunct(')');
    return args;
  }

  #directives(): GqlDirective[] {
    const directives: GqlDirective[] = [];
    while (this.#isPunct('@')) {
      this.#next();
      const name = this.#name();
      directives.push({ name, args: this.#isPunct('(') ? this.#arguments(false) : {} });
    }
    return directives;
  }

  #value(constant: boolean): GqlValue {
    const t = this.#next();
    if (t.kind === 'punct' && t.value === '$' && !constant) return { kind: 'variable', name: this.#name() };
    if (t.kind === 'number') return { kind: 'scalar', value: Number(t.value) };
    if (t.kind === 'string') return { kind: 'scalar', value: t.value };
    if (t.kind === 'name') {
      if (t.value === 'true' || t.value === 'false') return { kind: 'scalar', value: t.value === 'true' };
      if (t.value === 'null') return { kind: 'scalar', value: null };
      return { kind: 'enum', value: t.value };
    }
    if (t.kind === 'punct' && t.value === '[') {
      const values: GqlValue[] = [];
      while (!this.#isPunct(']')) values.push(this.#value(constant));
      this.#expectPunct(']');
      return { kind: 'list', values };
    }
    if (t.kind === 'punct' && t.value === '{') {
      const fields: Record<string, GqlValue> = {};
      while (!this.#isPunct('}')) {
        const name = this.#name();
        this.#expectPunct(':');
        fields[name] = this.#value(constant);
      }
      this.#expectPunct('}');
      return { kind: 'object', fields };
    }
    throw new GqlSyntaxError(`Syntax Error: unexpected token at ${t.at}`);
  }
}

/** A literal from the document (variable defaults); variables inside read as null. */
export function literalValue(value: GqlValue): unknown {
  switch (value.kind) {
    case 'variable':
      return null;
    case 'scalar':
    case 'enum':
      return value.value;
    case 'list':
      return value.values.map(literalValue);
    case 'object':
      return Object.fromEntries(Object.entries(value.fields).map(([k, v]) => [k, literalValue(v)]));
  }
}

export function parseGraphql(source: string): GqlDocument {
  return new Parser(source).document();
}
