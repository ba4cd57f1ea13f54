import { readFileSync } from 'node:fs';
import { specFixturePath } from '@warden/testing';

type Schema = {
  readonly $ref?: string;
  readonly type?: string;
  readonly description?: string;
  readonly properties?: Record<string, Schema>;
  readonly items?: Schema;
  readonly additionalProperties?: Schema | boolean;
  readonly allOf?: readonly Schema[];
  readonly oneOf?: readonly Schema[];
  readonly anyOf?: readonly Schema[];
};

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/**
 * The string fields of every 2xx JSON answer of Cloudflare's API document that `keep` accepts
 * (by name, description and where in the answer, `.result[].a`), as `{method, path, field}`
 * with `field` the field's place (`.result[].a.b`). `depth`: how many schemas deep to walk.
 */
export function answerStringFields(
  keep: (property: { name: string; description: string; at: string }) => boolean,
  depth = 16,
): { method: string; path: string; field: string }[] {
  const document = JSON.parse(readFileSync(specFixturePath(), 'utf8')) as {
    paths: Record<string, Record<string, { responses?: Record<string, Schema & { content?: unknown }> }>>;
  };
  const resolve = <T>(node: T & { $ref?: string }): T => {
    let at: unknown = node;
    for (let hops = 0; hops < 50 && (at as { $ref?: string } | undefined)?.$ref; hops++) {
      const ref = (at as { $ref: string }).$ref.replace(/^#\//, '').split('/');
      at = ref.reduce<unknown>(
        (o, k) => (o as Record<string, unknown> | undefined)?.[k.replace(/~1/g, '/').replace(/~0/g, '~')],
        document,
      );
    }
    return at as T;
  };
  const found = new Set<string>();
  const walk = (node: Schema | undefined, at: string, seen: ReadonlySet<Schema>, op: string) => {
    const schema = node ? resolve(node) : undefined;
    if (!schema || typeof schema !== 'object' || seen.has(schema) || seen.size > depth) return;
    const inner = new Set(seen).add(schema);
    for (const part of [...(schema.allOf ?? []), ...(schema.oneOf ?? []), ...(schema.anyOf ?? [])])
      walk(part, at, inner, op);
    if (schema.items) walk(schema.items, `${at}[]`, inner, op);
    if (typeof schema.additionalProperties === 'object')
      walk(schema.additionalProperties, `${at}{}`, inner, op);
    for (const [name, property] of Object.entries(schema.properties ?? {})) {
      const { type, description } = resolve(property) ?? {};
      if (type === 'string' && keep({ name, description: description ?? '', at }))
        found.add(`${op} ${at}.${name}`);
      walk(property, `${at}.${name}`, inner, op);
    }
  };
  for (const [path, item] of Object.entries(document.paths)) {
    for (const method of METHODS.filter((m) => item[m])) {
      for (const [status, response] of Object.entries(item[method]?.responses ?? {})) {
        if (!status.startsWith('2')) continue;
        const content = resolve(response).content as Record<string, { schema?: Schema }> | undefined;
        walk(content?.['application/json']?.schema, '', new Set(), `${method.toUpperCase()} ${path}`);
      }
    }
  }
  return [...found].map((line) => {
    const [method = '', path = '', field = ''] = line.split(' ');
    return { method, path, field };
  });
}

/** `{result: [{a: {b: value}}]}` for `.result[].a.b`. */
export function answerWith(field: string, value: string): Record<string, unknown> {
  let inner: unknown = value;
  for (const step of field.slice(1).split('.').reverse()) {
    const name = step.replace(/(\[\]|\{\})+$/, '');
    const wrappers = step.slice(name.length).match(/\[\]|\{\}/g) ?? [];
    for (const wrapper of wrappers.reverse()) inner = wrapper === '[]' ? [inner] : { k: inner };
    inner = { [name]: inner };
  }
  return inner as Record<string, unknown>;
}
