import type { OperationInfo } from './openapi-processor.ts';

export interface OperationMatch {
  readonly operation: OperationInfo;
  /** Path parameters of the template, percent-decoded: `{ zone_id: 'abc' }`. */
  readonly params: Readonly<Record<string, string>>;
}

/** `(method, concrete path) → operation`, e.g. `GET /zones/abc/dns_records` → `/zones/{zone_id}/dns_records`. */
export type OperationMatcher = (method: string, path: string) => OperationMatch | undefined;

interface TrieNode {
  readonly literal: Map<string, TrieNode>;
  readonly patterns: Array<{ readonly regex: RegExp; readonly node: TrieNode }>;
  param?: TrieNode;
  readonly operations: Map<string, OperationInfo>;
}

function newNode(): TrieNode {
  return { literal: new Map(), patterns: [], operations: new Map() };
}

const WHOLE_PARAM = /^\{[^{}]+\}$/;

function segmentsOf(path: string): string[] {
  const withoutQuery = path.split(/[?#]/, 1)[0] ?? '';
  return withoutQuery.split('/').filter((s) => s !== '');
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A segment that mixes text and parameters (`{name}.json`) becomes an anchored pattern. */
function patternFor(segment: string): RegExp {
  const source = segment
    .split(/(\{[^{}]+\})/)
    .map((part) => (WHOLE_PARAM.test(part) ? '([^/]+?)' : escapeRegex(part)))
    .join('');
  return new RegExp(`^${source}$`);
}

function extractParams(template: string, concrete: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {};
  segmentsOf(template).forEach((segment, i) => {
    const value = concrete[i];
    if (value === undefined || !segment.includes('{')) return;
    const names = [...segment.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1] as string);
    const captured = WHOLE_PARAM.test(segment) ? [value, value] : (patternFor(segment).exec(value) ?? []);
    names.forEach((name, j) => {
      const part = captured[j + 1];
      if (part !== undefined) params[name] = decode(part);
    });
  });
  return params;
}

export function createOperationMatcher(operations: readonly OperationInfo[]): OperationMatcher {
  const root = newNode();
  for (const operation of operations) {
    let node = root;
    for (const segment of segmentsOf(operation.path)) {
      let next: TrieNode | undefined;
      if (WHOLE_PARAM.test(segment)) {
        next = node.param ??= newNode();
      } else if (segment.includes('{')) {
        const regex = patternFor(segment);
        next = node.patterns.find((p) => p.regex.source === regex.source)?.node;
        if (!next) {
          next = newNode();
          node.patterns.push({ regex, node: next });
        }
      } else {
        next = node.literal.get(segment);
        if (!next) {
          next = newNode();
          node.literal.set(segment, next);
        }
      }
      node = next;
    }
    node.operations.set(operation.method.toUpperCase(), operation);
  }

  // Literal segments win over patterns, patterns over bare parameters; backtrack when a
  // more specific branch has no operation for this method.
  function walk(
    node: TrieNode,
    segments: readonly string[],
    i: number,
    method: string,
  ): OperationInfo | undefined {
    if (i === segments.length) return node.operations.get(method);
    const segment = segments[i] as string;
    const literal = node.literal.get(segment) ?? node.literal.get(decode(segment));
    const viaLiteral = literal && walk(literal, segments, i + 1, method);
    if (viaLiteral) return viaLiteral;
    for (const { regex, node: next } of node.patterns) {
      if (!regex.test(segment)) continue;
      const found = walk(next, segments, i + 1, method);
      if (found) return found;
    }
    return node.param && walk(node.param, segments, i + 1, method);
  }

  return (method, path) => {
    const segments = segmentsOf(path);
    const operation = walk(root, segments, 0, method.toUpperCase());
    return operation && { operation, params: extractParams(operation.path, segments) };
  };
}
