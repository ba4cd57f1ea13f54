/**
 * The JavaScript that runs inside every isolate before agent code: Warden's runtime. It is
 * plain JavaScript (not TypeScript) because V8 compiles it inside the sandbox; keep it
 * self-contained. It runs as a function body (an `evalClosure` body, or inside
 * `ISOLATE_RUNTIME_SCRIPT`) with `$0` = mode (`'search'` or `'execute'`) and `$1` = the
 * processed spec (search only), and returns a frozen object of functions the host holds
 * references to; agent code never gets a handle on them.
 *
 * - Intrinsics the runtime relies on are captured first, so agent code cannot change how
 *   results are serialized or errors classified.
 * - Globals that could outlive a call or block a thread go: WebAssembly (async compiles),
 *   SharedArrayBuffer/Atomics (a futex wait cannot be interrupted), FinalizationRegistry and
 *   WeakRef (callbacks timed by GC), V8's own console, RegExp's legacy statics (the last match
 *   of a previous call).
 * - Search contexts are reused, so everything reachable is frozen: the spec, the global
 *   object, every intrinsic (reachable or hidden, like %GeneratorPrototype%). A few inherited
 *   properties that agent code commonly shadows by assignment (`this.name = ...` in an Error
 *   subclass) become accessors that define an own property on the receiver instead.
 * - Execute's `cloudflare` is a proxy: `request` is a plain function, any other name starts an
 *   SDK-style method path (`cloudflare.dns.records.list`). A call looks its method up in the
 *   child's table once per isolate, builds the same payload `cloudflare.request` would send and
 *   sends it through the same channel; nothing is built before code touches a method.
 */
export const ISOLATE_RUNTIME_SOURCE = String.raw`
'use strict';
const mode = $0;
const { defineProperty, freeze, getPrototypeOf, getOwnPropertyDescriptor, keys } = Object;
const { apply, ownKeys } = Reflect;
const stringify = JSON.stringify;
const parse = JSON.parse;
const SafeError = Error;
const SafeTypeError = TypeError;
const SafeSet = Set;
const SafeWeakMap = WeakMap;
const SafeMap = Map;
const SafeProxy = Proxy;
const SafeDate = Date;
const SafeString = String;
const SafeNumber = Number;
const isArray = Array.isArray;
const encodeSegment = encodeURIComponent;
const asyncIterator = Symbol.asyncIterator;
const mapGet = Map.prototype.get;
const mapSet = Map.prototype.set;
const dateToISOString = Date.prototype.toISOString;
const stringReplace = String.prototype.replace;
const stringSplit = String.prototype.split;
const setHas = Set.prototype.has;
const weakMapGet = WeakMap.prototype.get;
const weakMapSet = WeakMap.prototype.set;
const regExpExec = RegExp.prototype.exec;
const stringSlice = String.prototype.slice;
const stringIndexOf = String.prototype.indexOf;
const toUpperCase = String.prototype.toUpperCase;
const LOCATION = /code\.js:(\d+):(\d+)/;
const MAX_MESSAGE = 2000;
const MAX_LOG_LINE = 4000;

// Errors raised by the runtime itself (upstream refusals); their code cannot be forged.
const raised = new SafeWeakMap();

for (const name of ['WebAssembly', 'SharedArrayBuffer', 'Atomics', 'FinalizationRegistry', 'WeakRef', 'console']) {
  delete globalThis[name];
}
for (const name of ['input', '$_', 'lastMatch', '$&', 'lastParen', '$+', 'leftContext', '$' + '\x60', 'rightContext', "$'",
  '$1', '$2', '$3', '$4', '$5', '$6', '$7', '$8', '$9']) {
  delete RegExp[name];
}

function cut(text, max) {
  return text.length > max ? apply(stringSlice, text, [0, max]) + '…' : text;
}

function safeString(value) {
  try {
    return typeof value === 'string' ? value : SafeString(value);
  } catch {
    return '[unprintable value]';
  }
}

function location(error) {
  let stack;
  try {
    stack = error.stack;
  } catch {
    return '';
  }
  if (typeof stack !== 'string') return '';
  const frames = apply(stringIndexOf, stack, ['\n    at ']);
  if (frames < 0) return '';
  const match = apply(regExpExec, LOCATION, [apply(stringSlice, stack, [frames])]);
  return match ? ' (line ' + match[1] + ', column ' + match[2] + ')' : '';
}

function describe(error) {
  if ((typeof error === 'object' || typeof error === 'function') && error !== null) {
    const known = apply(weakMapGet, raised, [error]);
    if (known) return known;
  }
  let message;
  if (error instanceof SafeError) {
    let name;
    let text;
    try {
      name = safeString(error.name);
      text = safeString(error.message);
    } catch {
      name = 'Error';
      text = '';
    }
    message = name + ': ' + text + location(error);
  } else {
    message = 'Uncaught ' + safeString(error);
  }
  return { code: 'execution_error', message: cut(message, MAX_MESSAGE) };
}

function raise(code, message) {
  const error = new SafeError(message);
  defineProperty(error, 'code', { value: code, writable: true, enumerable: true, configurable: true });
  apply(weakMapSet, raised, [error, freeze({ code, message })]);
  return error;
}

async function run(value, maxChars) {
  try {
    const result = await (typeof value === 'function' ? apply(value, undefined, []) : value);
    let json;
    try {
      json = stringify(result);
    } catch (error) {
      return { ok: false, code: 'execution_error', message: 'the result is not JSON-serializable: ' + describe(error).message };
    }
    if (json === undefined) json = 'null';
    if (json.length > maxChars) {
      return {
        ok: false,
        code: 'result_too_large',
        message: 'the result is ' + json.length + ' characters of JSON, over the limit of ' + maxChars +
          '; return less (filter, pick fields, paginate)',
      };
    }
    return { ok: true, json };
  } catch (error) {
    const { code, message } = describe(error);
    return { ok: false, code, message };
  }
}

function format(args) {
  let line = '';
  for (let i = 0; i < args.length && line.length < MAX_LOG_LINE; i++) {
    const arg = args[i];
    let text;
    if (typeof arg === 'string') {
      text = arg;
    } else {
      try {
        text = stringify(arg);
      } catch {
        text = undefined;
      }
      if (text === undefined) text = safeString(arg);
    }
    line += (i > 0 ? ' ' : '') + text;
  }
  return cut(line, MAX_LOG_LINE);
}

function makeConsole(log) {
  const level = (name) => (...args) => {
    log(name, format(args));
  };
  return freeze({ log: level('log'), info: level('info'), debug: level('debug'), warn: level('warn'), error: level('error') });
}

function makeAllowed(access) {
  const readOnly = access !== null && access.readOnly === true;
  const denied = new SafeSet(access !== null && access.denied ? access.denied : []);
  return freeze(function allowed(method, path) {
    const verb = apply(toUpperCase, safeString(method), []);
    if (readOnly && verb !== 'GET') return false;
    return !apply(setHas, denied, [verb + ' ' + safeString(path)]);
  });
}

function requestPayload(request) {
  if (typeof request !== 'object' || request === null) {
    throw new SafeTypeError('expects an object {method, path, query?, body?, contentType?, rawBody?}');
  }
  const payload = {};
  for (const key of keys(request)) {
    defineProperty(payload, key, { value: request[key], writable: true, enumerable: true, configurable: true });
  }
  if (payload.body !== undefined) payload.body = parse(stringify(payload.body));
  return payload;
}

// Execute isolates: the account of the call that owns the isolate (set by begin).
let callAccountId;

// Execute isolates: called once when the isolate is built, before any call owns it.
// \`describeMethod(name)\` and \`methodNames()\`, when given, read the child's SDK method table.
function setup(upstream, log, describeMethod, methodNames) {
  const send = upstream.apply;
  const exchange = (payload) => apply(send, upstream, [undefined, [payload], {
    arguments: { copy: true },
    result: { promise: true, copy: true },
  }]);
  const request = async function request(options) {
    let outcome;
    try {
      outcome = await exchange(requestPayload(options));
    } catch (error) {
      // The request could not be copied out (functions, BigInt, symbols): it is not plain data.
      throw raise('invalid_request', 'cloudflare.request: ' + describe(error).message);
    }
    if (outcome.ok) return outcome.response;
    throw raise(outcome.code, outcome.message);
  };
  let cloudflare = freeze({ request });
  if (describeMethod) {
    const root = cloudflare;
    const method = sdkMethods(exchange, describeMethod, methodNames);
    cloudflare = new SafeProxy(root, {
      get(target, key) {
        if (key === 'request' || typeof key !== 'string' || NOT_SDK_NAMES.has(key)) return target[key];
        return method(key);
      },
    });
  }
  defineProperty(globalThis, 'cloudflare', { value: cloudflare, enumerable: true });
  defineProperty(globalThis, 'console', { value: makeConsole(log), enumerable: true });
}

// Execute isolates: called once by the call that takes the isolate, before its code runs.
function begin(accountId) {
  callAccountId = accountId === null ? undefined : accountId;
  defineProperty(globalThis, 'accountId', { value: callAccountId, enumerable: true });
}

// Properties that generic code probes on any object (await, JSON, string conversion); none is
// an SDK name, and answering them with a method would make \`await cloudflare.dns\` hang.
const NOT_SDK_NAMES = new SafeSet(['then', 'catch', 'finally', 'toJSON', 'constructor', 'valueOf', 'toString']);
const OPTION_NAMES = new SafeSet(['query', 'contentType', 'timeout', 'maxRetries', 'idempotencyKey']);

function upstreamText(message) {
  // The parent words refusals for cloudflare.request; an SDK call names its method instead.
  return apply(stringReplace, safeString(message), [/^cloudflare\.request: /, '']);
}

function sdkMethods(exchange, describeMethod, methodNames) {
  const nodes = new SafeMap();
  const shapes = new SafeMap();
  let allNames;

  function shapeOf(name) {
    let shape = apply(mapGet, shapes, [name]);
    if (shape === undefined) {
      shape = describeMethod(name);
      apply(mapSet, shapes, [name, shape]);
    }
    return shape;
  }

  function node(name) {
    let proxy = apply(mapGet, nodes, [name]);
    if (proxy !== undefined) return proxy;
    proxy = new SafeProxy(() => {}, {
      get(target, key) {
        if (typeof key !== 'string' || NOT_SDK_NAMES.has(key)) return target[key];
        return node(name + '.' + key);
      },
      apply(target, thisArg, args) {
        return call(name, args);
      },
    });
    apply(mapSet, nodes, [name, proxy]);
    return proxy;
  }

  function call(name, args) {
    const shape = shapeOf(name);
    let promise;
    try {
      promise = shape === null ? Promise.reject(unknownMethod(name)) : invoke(name, shape, args);
    } catch (error) {
      promise = Promise.reject(error);
    }
    if (shape === null || shape.pagination !== null) {
      // Like the SDK's PagePromise: \`for await (const x of cloudflare.….list(…))\` without an await.
      defineProperty(promise, asyncIterator, {
        value: async function* () {
          yield* await promise;
        },
      });
    }
    return promise;
  }

  async function invoke(name, shape, args) {
    const payload = buildRequest(name, shape, args);
    const response = await sendFor(name, payload);
    return shape.pagination === null ? response.result : makePage(name, shape, sendFor, payload, response, 1, 0);
  }

  async function sendFor(name, payload) {
    let outcome;
    try {
      outcome = await exchange(payload);
    } catch (error) {
      throw raise('invalid_request', 'cloudflare.' + name + ': ' + describe(error).message);
    }
    if (!outcome.ok) throw raise(outcome.code, 'cloudflare.' + name + ': ' + upstreamText(outcome.message));
    const response = outcome.response;
    if (!response.success) throw apiError(name, response);
    return response;
  }

  function unknownMethod(name) {
    allNames ??= apply(stringSplit, methodNames(), [' ']);
    const near = nearest(name, allNames, 3);
    return new SafeTypeError('cloudflare.' + name + ' is not a method of the Cloudflare SDK' +
      (near.length > 0 ? '; did you mean ' + near.map((n) => 'cloudflare.' + n).join(' or ') + '?' : '') +
      ' (spec.sdk in cloudflare_search lists them; cloudflare.request calls any path)');
  }

  return node;
}

function apiError(name, response) {
  const errors = isArray(response.errors) ? response.errors : [];
  const detail = errors.map((e) => safeString(e && e.message) + (e && e.code !== undefined ? ' (' + e.code + ')' : '')).join('; ');
  const error = raise('upstream_error', cut('cloudflare.' + name + ': Cloudflare answered ' + response.status +
    (detail ? ': ' + detail : ''), MAX_MESSAGE));
  defineProperty(error, 'status', { value: response.status, writable: true, enumerable: true, configurable: true });
  defineProperty(error, 'errors', { value: errors, writable: true, enumerable: true, configurable: true });
  return error;
}

// Levenshtein distance, cut off above \`limit\` (a name that far away cannot make the list).
function distance(a, b, limit) {
  if (a.length - b.length > limit || b.length - a.length > limit) return limit + 1;
  let previous = [];
  for (let j = 0; j <= b.length; j++) previous[j] = j;
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let best = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
      if (current[j] < best) best = current[j];
    }
    if (best > limit) return limit + 1;
    previous = current;
  }
  return previous[b.length];
}

// Up to \`count\` names closest to \`name\`, leaving out any clearly farther than the closest.
function nearest(name, names, count) {
  const found = [];
  let limit = Infinity;
  for (const candidate of names) {
    const d = distance(name, candidate, limit);
    if (d > limit) continue;
    found.push([d, candidate]);
    found.sort((x, y) => x[0] - y[0]);
    if (found.length > count) found.length = count;
    if (found.length === count) limit = found[count - 1][0];
  }
  return found.filter((entry) => entry[0] <= found[0][0] + 1).map((entry) => entry[1]);
}

function argumentError(name, shape, message) {
  const args = shape.positional.map((p) => (p === '$body' ? 'body' : p));
  return new SafeTypeError('cloudflare.' + name + ': ' + message + ' (call it as cloudflare.' + name + '(' +
    (args.length > 0 ? args.join(', ') + ', ' : '') + '{ ...params }, options?) for ' + shape.method + ' ' + shape.path + ')');
}

function plainObject(value) {
  return typeof value === 'object' && value !== null && !isArray(value);
}

// The SDK's query encoding (qs with allowDots): {name: {contains: 'x'}} → name.contains=x.
function addQuery(query, key, value, fail) {
  if (value === undefined || value === null) return;
  if (value instanceof SafeDate) {
    query[key] = apply(dateToISOString, value, []);
  } else if (isArray(value)) {
    throw fail('query parameter ' + key + ' is an array; the query takes one value per name (join the values if the API accepts a list, or make one call per value)');
  } else if (typeof value === 'object') {
    for (const inner of keys(value)) addQuery(query, key + '.' + inner, value[inner], fail);
  } else if (typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && SafeNumber.isFinite(value))) {
    query[key] = value;
  } else {
    throw fail('query parameter ' + key + ' must be a string, a finite number or a boolean');
  }
}

// Routes arguments as the SDK does: path parameters by name (\`account_id\` defaults to the
// call's account), the rest to the query for GET and DELETE and to the JSON body otherwise,
// except the query parameters the OpenAPI operation declares.
function buildRequest(name, shape, args) {
  const fail = (message) => argumentError(name, shape, message);
  const given = {};
  let rawBody;
  let index = 0;
  if (shape.positional.length > 0 && (typeof args[0] === 'string' || typeof args[0] === 'number')) {
    for (const arg of shape.positional) {
      const value = args[index++];
      if (arg === '$body') rawBody = value;
      else given[arg] = value;
    }
  }
  const params = args[index] === undefined || args[index] === null ? {} : args[index];
  const options = args[index + 1] === undefined || args[index + 1] === null ? {} : args[index + 1];
  if (!plainObject(params)) throw fail('params must be an object');
  if (!plainObject(options)) throw fail('options must be an object');
  for (const key of keys(options)) {
    if (!OPTION_NAMES.has(key)) throw fail('options.' + key + ' is not supported; options take query and contentType (Warden sets headers and retries nothing)');
  }
  const used = new SafeSet();
  const pathValue = (param) => {
    used.add(param);
    let value = given[param] !== undefined ? given[param] : params[param];
    if ((value === undefined || value === null) && param === 'account_id') value = callAccountId;
    if (value === undefined || value === null || value === '') throw fail(param + ' is required');
    if (typeof value !== 'string' && !(typeof value === 'number' && SafeNumber.isFinite(value))) {
      throw fail(param + ' must be a string');
    }
    return encodeSegment(SafeString(value));
  };
  let path = shape.path;
  if (apply(stringIndexOf, path, ['/{accounts_or_zones}/{account_or_zone_id}']) === 0) {
    // The SDK's account-or-zone methods take exactly one of account_id and zone_id.
    used.add('account_id');
    used.add('zone_id');
    const zone = params.zone_id;
    const account = params.account_id;
    if (zone !== undefined && account !== undefined) throw fail('pass account_id or zone_id, not both');
    const root = zone !== undefined ? 'zones/' + pathValue('zone_id') : 'accounts/' + pathValue('account_id');
    path = '/' + root + apply(stringSlice, path, ['/{accounts_or_zones}/{account_or_zone_id}'.length]);
  }
  path = apply(stringReplace, path, [/\{([^{}]+)\}/g, (match, param) => pathValue(param)]);

  const query = {};
  const toQuery = shape.method === 'GET' || shape.method === 'DELETE' || shape.arrayBody !== null || rawBody !== undefined;
  let body;
  if (shape.arrayBody !== null) {
    used.add(shape.arrayBody);
    body = params[shape.arrayBody];
  }
  for (const key of keys(params)) {
    if (used.has(key) || params[key] === undefined) continue;
    if (toQuery || shape.query.includes(key)) {
      addQuery(query, key, params[key], fail);
    } else {
      body ??= {};
      body[key] = params[key];
    }
  }
  if (options.query !== undefined) {
    if (!plainObject(options.query)) throw fail('options.query must be an object');
    for (const key of keys(options.query)) addQuery(query, key, options.query[key], fail);
  }
  const payload = { method: shape.method, path };
  if (keys(query).length > 0) payload.query = query;
  if (rawBody !== undefined) {
    if (typeof rawBody !== 'string') throw fail('the body must be a string');
    payload.rawBody = rawBody;
    payload.contentType = options.contentType === undefined ? 'application/octet-stream' : options.contentType;
  } else {
    if (body === undefined && shape.method !== 'GET' && shape.method !== 'DELETE') body = {};
    if (body !== undefined) payload.body = parse(stringify(body));
    if (options.contentType !== undefined) payload.contentType = options.contentType;
  }
  return payload;
}

function pageItems(pagination, result) {
  const items = pagination === 'page_items' ? result && result.items
    : pagination === 'instances' ? result && result.instances
      : result;
  return isArray(items) ? items : [];
}

// The query of the next page, or null; the SDK's rules, plus total_pages when the API gives it.
function nextPageQuery(pagination, query, response) {
  if (pageItems(pagination, response.result).length === 0) return null;
  const info = plainObject(response.result_info) ? response.result_info : {};
  const withParam = (key, value) => {
    const next = {};
    for (const k of keys(query || {})) next[k] = query[k];
    next[key] = value;
    return next;
  };
  if (pagination === 'page' || pagination === 'page_items') {
    const current = SafeNumber((query && query.page) ?? info.page ?? 1);
    if (typeof info.total_pages === 'number' && current >= info.total_pages) return null;
    return withParam('page', current + 1);
  }
  const cursor = pagination === 'cursor' ? info.cursor
    : pagination === 'cursor_after' ? info.cursors && info.cursors.after
      : pagination === 'token' || pagination === 'instances' ? info.next_page_token
        : undefined;
  if (!cursor) return null;
  return withParam(pagination === 'token' || pagination === 'instances' ? 'page_token' : 'cursor', cursor);
}

function makePage(name, shape, sendFor, payload, response, pageNumber, itemsBefore) {
  const page = { result: response.result };
  if (response.result_info !== undefined || shape.pagination !== 'single') page.result_info = response.result_info ?? {};
  const items = pageItems(shape.pagination, response.result);
  const nextQuery = nextPageQuery(shape.pagination, payload.query, response);
  const getNextPage = async () => {
    if (nextQuery === null) throw new SafeTypeError('cloudflare.' + name + ': there is no next page; check hasNextPage() first');
    const next = { method: payload.method, path: payload.path, query: nextQuery };
    if (payload.body !== undefined) next.body = payload.body;
    if (payload.contentType !== undefined) next.contentType = payload.contentType;
    return makePage(name, shape, sendFor, next, await sendFor(name, next), pageNumber + 1, itemsBefore + items.length);
  };
  const hidden = (key, value) => defineProperty(page, key, { value, writable: true, configurable: true });
  hidden('getPaginatedItems', () => items);
  hidden('hasNextPage', () => nextQuery !== null);
  hidden('getNextPage', getNextPage);
  hidden(asyncIterator, async function* () {
    let current = page;
    let pages = pageNumber;
    let seen = itemsBefore;
    for (;;) {
      const pageItemsNow = current.getPaginatedItems();
      yield* pageItemsNow;
      seen += pageItemsNow.length;
      if (!current.hasNextPage()) return;
      try {
        current = await current.getNextPage();
      } catch (error) {
        const known = apply(weakMapGet, raised, [error]);
        if (!known || known.code !== 'too_many_requests') throw error;
        throw raise('too_many_requests', 'cloudflare.' + name + ': stopped after ' + pages + ' pages (' + seen +
          ' items): ' + apply(stringReplace, known.message, ['cloudflare.' + name + ': ', '']) +
          '; ask for fewer pages (filters, per_page) or stop iterating earlier');
      }
      pages++;
    }
  });
  return page;
}

function deepFreeze(roots) {
  const seen = new SafeSet();
  const stack = [...roots];
  while (stack.length > 0) {
    const value = stack.pop();
    if ((typeof value !== 'object' && typeof value !== 'function') || value === null || apply(setHas, seen, [value])) continue;
    seen.add(value);
    freeze(value);
    stack.push(getPrototypeOf(value));
    for (const key of ownKeys(value)) {
      const descriptor = getOwnPropertyDescriptor(value, key);
      if ('value' in descriptor) stack.push(descriptor.value);
      else stack.push(descriptor.get, descriptor.set);
    }
  }
}

function tameOverrides() {
  const prototypes = [Object.prototype, Array.prototype, Function.prototype, Promise.prototype, Error.prototype,
    EvalError.prototype, RangeError.prototype, ReferenceError.prototype, SyntaxError.prototype, TypeError.prototype,
    URIError.prototype, AggregateError.prototype];
  for (const proto of prototypes) {
    for (const name of ['constructor', 'name', 'message', 'toString', 'valueOf', 'toLocaleString']) {
      const descriptor = getOwnPropertyDescriptor(proto, name);
      if (!descriptor || !('value' in descriptor)) continue;
      const original = descriptor.value;
      defineProperty(proto, name, {
        get() {
          return original;
        },
        set(value) {
          if (this === proto) throw new SafeTypeError('Cannot assign to read only property ' + name);
          defineProperty(this, name, { value, writable: true, enumerable: true, configurable: true });
        },
        enumerable: descriptor.enumerable,
        configurable: false,
      });
    }
  }
}

function hiddenIntrinsics() {
  const hidden = [
    getPrototypeOf(function* () {}),
    getPrototypeOf(async function () {}),
    getPrototypeOf(async function* () {}),
    getPrototypeOf([][Symbol.iterator]()),
    getPrototypeOf(new Map()[Symbol.iterator]()),
    getPrototypeOf(new Set()[Symbol.iterator]()),
    getPrototypeOf(''[Symbol.iterator]()),
    getPrototypeOf(/x/[Symbol.matchAll]('')),
    getPrototypeOf([].values().map((x) => x)),
    getPrototypeOf(Iterator.from({ next: () => ({ done: true }) })),
  ];
  const segments = new Intl.Segmenter().segment('');
  hidden.push(getPrototypeOf(segments), getPrototypeOf(segments[Symbol.iterator]()));
  return hidden;
}

if (mode === 'search') {
  const spec = $1;
  tameOverrides();
  deepFreeze([spec]);
  defineProperty(globalThis, 'spec', { value: spec, enumerable: true });
  deepFreeze([globalThis, ...hiddenIntrinsics()]);
}

return freeze({ run, makeAllowed, makeConsole, setup, begin });
`;

/**
 * The runtime as a script whose value is a function of `($0, $1)`. Unlike an `evalClosure`
 * body, a script can be compiled from V8's code cache: execute builds an isolate per call,
 * and compiling the runtime from source was most of the cost of loading it.
 */
export const ISOLATE_RUNTIME_SCRIPT = `(function ($0, $1) {\n${ISOLATE_RUNTIME_SOURCE}\n})`;
