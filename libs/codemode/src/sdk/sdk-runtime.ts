/**
 * The SDK-style part of the execute runtime (plain JavaScript, compiled with
 * `isolate-runtime.ts`'s body and using what it captured): `cloudflare.dns.records.list(…)`.
 *
 * `cloudflare` becomes a proxy whose `request` is the plain function and whose every other
 * name starts a method path. A call looks the path up once per isolate (a synchronous callback
 * into the child's table), routes the arguments as the SDK does, builds the payload
 * `cloudflare.request` would send and sends it through the same channel, so the parent's
 * checks, budget and audit apply unchanged.
 *
 * Functions are wrapped in parentheses so V8 compiles them eagerly, into the code cache every
 * execute isolate is built from; compiled lazily, in each fresh isolate, they took longer than
 * the rest of an SDK call.
 */
export const SDK_RUNTIME_SOURCE = String.raw`
const SafeMap = Map;
const SafeProxy = Proxy;
const SafeDate = Date;
const SafeNumber = Number;
const isArray = Array.isArray;
const encodeSegment = encodeURIComponent;
const asyncIterator = Symbol.asyncIterator;
const mapGet = Map.prototype.get;
const mapSet = Map.prototype.set;
const dateToISOString = Date.prototype.toISOString;
const stringReplace = String.prototype.replace;
const stringSplit = String.prototype.split;

// Properties that generic code probes on any object (await, JSON, string conversion); none is
// an SDK name, and answering them with a method would make \`await cloudflare.dns\` hang.
const NOT_SDK_NAMES = new SafeSet(['then', 'catch', 'finally', 'toJSON', 'constructor', 'valueOf', 'toString']);
// The longest SDK method name has 75 characters.
const MAX_NAME = 200;
const OPTION_NAMES = new SafeSet(['query', 'contentType', 'timeout', 'maxRetries', 'idempotencyKey']);

const upstreamText = (function upstreamText(message) {
  // The parent words refusals for cloudflare.request; an SDK call names its method instead.
  return apply(stringReplace, safeString(message), [/^cloudflare\.request: /, '']);
});

const sdkMethods = (function sdkMethods(exchange, describeMethod, methodNames) {
  const nodes = new SafeMap();
  const shapes = new SafeMap();
  let allNames;

  const shapeOf = (function shapeOf(name) {
    let shape = apply(mapGet, shapes, [name]);
    if (shape === undefined) {
      // A name longer than any method's is not copied out to the child's heap.
      shape = name.length > MAX_NAME ? null : describeMethod(name);
      apply(mapSet, shapes, [name, shape]);
    }
    return shape;
  });

  const node = (function node(name) {
    let proxy = apply(mapGet, nodes, [name]);
    if (proxy !== undefined) return proxy;
    proxy = new SafeProxy(() => {}, {
      get: (function get(target, key) {
        if (typeof key !== 'string' || NOT_SDK_NAMES.has(key)) return target[key];
        return node(name + '.' + key);
      }),
      apply: (function apply(target, thisArg, args) {
        return call(name, args);
      }),
    });
    apply(mapSet, nodes, [name, proxy]);
    return proxy;
  });

  const call = (function call(name, args) {
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
  });

  const invoke = (async function invoke(name, shape, args) {
    const payload = buildRequest(name, shape, args);
    const response = await sendFor(name, payload);
    return shape.pagination === null ? response.result : makePage(name, shape, sendFor, payload, response, 1, 0);
  });

  const sendFor = (async function sendFor(name, payload) {
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
  });

  const unknownMethod = (function unknownMethod(name) {
    allNames ??= apply(stringSplit, methodNames(), [' ']);
    const near = name.length > MAX_NAME ? [] : nearest(name, allNames, 3);
    return new SafeTypeError(cut('cloudflare.' + name, MAX_NAME) + ' is not a method of the Cloudflare SDK' +
      (near.length > 0 ? '; did you mean ' + near.map((n) => 'cloudflare.' + n).join(' or ') + '?' : '') +
      ' (spec.sdk in cloudflare_search lists them; cloudflare.request calls any path)');
  });

  return node;
});

const apiError = (function apiError(name, response) {
  const errors = isArray(response.errors) ? response.errors : [];
  const detail = errors.map((e) => safeString(e && e.message) + (e && e.code !== undefined ? ' (' + e.code + ')' : '')).join('; ');
  const error = raise('upstream_error', cut('cloudflare.' + name + ': Cloudflare answered ' + response.status +
    (detail ? ': ' + detail : ''), MAX_MESSAGE));
  defineProperty(error, 'status', { value: response.status, writable: true, enumerable: true, configurable: true });
  defineProperty(error, 'errors', { value: errors, writable: true, enumerable: true, configurable: true });
  return error;
});

// Levenshtein distance, cut off above \`limit\` (a name that far away cannot make the list).
const distance = (function distance(a, b, limit) {
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
});

// Up to \`count\` names closest to \`name\`, leaving out any clearly farther than the closest.
const nearest = (function nearest(name, names, count) {
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
});

const argumentError = (function argumentError(name, shape, message) {
  const args = shape.positional.map((p) => (p === '$body' ? 'body' : p));
  return new SafeTypeError('cloudflare.' + name + ': ' + message + ' (call it as cloudflare.' + name + '(' +
    (args.length > 0 ? args.join(', ') + ', ' : '') + '{ ...params }, options?) for ' + shape.method + ' ' + shape.path + ')');
});

const plainObject = (function plainObject(value) {
  return typeof value === 'object' && value !== null && !isArray(value);
});

// The SDK's query encoding (qs with allowDots): {name: {contains: 'x'}} → name.contains=x.
const addQuery = (function addQuery(query, key, value, fail) {
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
});

// Routes arguments as the SDK does: path parameters by name (\`account_id\` defaults to the
// call's account), the rest to the query for GET and DELETE and to the JSON body otherwise,
// except the query parameters the OpenAPI operation declares.
const buildRequest = (function buildRequest(name, shape, args) {
  const fail = (function fail(message) {
    return argumentError(name, shape, message);
  });
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
  const pathValue = (function pathValue(param) {
    used.add(param);
    let value = given[param] !== undefined ? given[param] : params[param];
    if ((value === undefined || value === null) && param === 'account_id') value = callAccountId;
    if (value === undefined || value === null || value === '') throw fail(param + ' is required');
    if (typeof value !== 'string' && !(typeof value === 'number' && SafeNumber.isFinite(value))) {
      throw fail(param + ' must be a string');
    }
    return encodeSegment(SafeString(value));
  });
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
  // Placeholders filled by a scan, not a regular expression: a fresh isolate compiles each
  // regular expression it runs, which cost more than the rest of building the request.
  let filled = '';
  for (let at = 0; ;) {
    const open = apply(stringIndexOf, path, ['{', at]);
    const close = open < 0 ? -1 : apply(stringIndexOf, path, ['}', open]);
    if (close < 0) {
      filled += apply(stringSlice, path, [at]);
      break;
    }
    filled += apply(stringSlice, path, [at, open]) + pathValue(apply(stringSlice, path, [open + 1, close]));
    at = close + 1;
  }
  path = filled;

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
});

const pageItems = (function pageItems(pagination, result) {
  const items = pagination === 'page_items' ? result && result.items
    : pagination === 'instances' ? result && result.instances
      : result;
  return isArray(items) ? items : [];
});

// The query of the next page, or null; the SDK's rules, plus total_pages when the API gives it.
const nextPageQuery = (function nextPageQuery(pagination, query, response) {
  if (pageItems(pagination, response.result).length === 0) return null;
  const info = plainObject(response.result_info) ? response.result_info : {};
  const withParam = ((key, value) => {
    const next = {};
    for (const k of keys(query || {})) next[k] = query[k];
    next[key] = value;
    return next;
  });
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
});

const makePage = (function makePage(name, shape, sendFor, payload, response, pageNumber, itemsBefore) {
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
  const hidden = ((key, value) => defineProperty(page, key, { value, writable: true, configurable: true }));
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
});

const sdkProxy = (function sdkProxy(root, exchange, describeMethod, methodNames) {
  const method = sdkMethods(exchange, describeMethod, methodNames);
  return new SafeProxy(root, {
    get: (function get(target, key) {
      if (key === 'request' || typeof key !== 'string' || NOT_SDK_NAMES.has(key)) return target[key];
      return method(key);
    }),
  });
});
`;
