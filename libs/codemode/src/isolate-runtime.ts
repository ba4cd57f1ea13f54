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
 * - Execute's `cloudflare` gets SDK-style methods from `sdk/sdk-runtime.ts` when the host
 *   passes its SDK table (`SDK_ISOLATE_RUNTIME_SCRIPT`).
 */
import { SDK_RUNTIME_SOURCE } from './sdk/sdk-runtime.ts';

const RUNTIME_BODY = String.raw`
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
const SafeString = String;
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
// A resizable ArrayBuffer is reserved and grown outside isolated-vm's allocator, so the isolate's
// memory limit never sees it (2 GB grew in a 128 MB isolate). The constructor refuses
// maxByteLength, and the original constructor is reachable from nowhere agent code can see.
{
  const NativeArrayBuffer = ArrayBuffer;
  const proto = NativeArrayBuffer.prototype;
  const construct = Reflect.construct;
  const isView = NativeArrayBuffer.isView;
  const ArrayBufferFixed = function ArrayBuffer(length, options) {
    if (new.target === undefined) throw new TypeError("Constructor ArrayBuffer requires 'new'");
    if ((typeof options === 'object' || typeof options === 'function') && options !== null && options.maxByteLength !== undefined) {
      throw new RangeError('resizable ArrayBuffers (maxByteLength) are not available in the sandbox');
    }
    return construct(NativeArrayBuffer, [length], new.target);
  };
  defineProperty(ArrayBufferFixed, 'prototype', { value: proto, writable: false, enumerable: false, configurable: false });
  defineProperty(ArrayBufferFixed, 'isView', { value: isView, writable: true, enumerable: false, configurable: true });
  defineProperty(proto, 'constructor', { value: ArrayBufferFixed, writable: true, enumerable: false, configurable: true });
  delete proto.resize;
  defineProperty(globalThis, 'ArrayBuffer', { value: ArrayBufferFixed, writable: true, enumerable: false, configurable: true });
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
        message: 'the result is ' + json.length + ' characters of JSON, over the execution result limit of ' + maxChars +
          '; return less (filter, pick fields, paginate; an R2 object larger than that: read part of it with r2.get range)',
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

// \`r2.<op>(params)\`: the payload \`{r2: op, ...params}\` goes through the same channel as
// cloudflare.request; the host validates, applies policy, budget and audit, signs and sends.
function makeR2(exchange) {
  const r2 = {};
  for (const op of ['list', 'head', 'get', 'put', 'delete']) {
    r2[op] = async function (params) {
      if (typeof params !== 'object' || params === null) {
        throw new SafeTypeError('r2.' + op + ': expects an object {bucket' + (op === 'list' ? ', prefix?, ...}' : ', key, ...}'));
      }
      const payload = {};
      for (const key of keys(params)) {
        defineProperty(payload, key, { value: params[key], writable: true, enumerable: true, configurable: true });
      }
      payload.r2 = op;
      if (payload.accountId === undefined) payload.accountId = callAccountId === undefined ? null : callAccountId;
      if (op === 'put' && payload.as === 'json') payload.body = stringify(payload.body);
      let outcome;
      try {
        outcome = await exchange(payload);
      } catch (error) {
        throw raise('invalid_request', 'r2.' + op + ': ' + describe(error).message);
      }
      if (outcome.ok) return outcome.response;
      throw raise(outcome.code, outcome.message);
    };
  }
  return freeze(r2);
}

// \`tail.worker(params)\`: the payload \`{tail: 'worker', ...params}\` goes through the same
// channel; the host validates it, applies policy, budget and audit, runs the tail and deletes it.
function makeTail(exchange) {
  const tail = {};
  tail.worker = async function (params) {
    if (typeof params !== 'object' || params === null) {
      throw new SafeTypeError('tail.worker: expects an object {script, seconds, filters?, maxEvents?}');
    }
    const payload = {};
    for (const key of keys(params)) {
      defineProperty(payload, key, { value: params[key], writable: true, enumerable: true, configurable: true });
    }
    payload.tail = 'worker';
    if (payload.accountId === undefined) payload.accountId = callAccountId === undefined ? null : callAccountId;
    let outcome;
    try {
      outcome = await exchange(payload);
    } catch (error) {
      throw raise('invalid_request', 'tail.worker: ' + describe(error).message);
    }
    if (outcome.ok) return outcome.response;
    throw raise(outcome.code, outcome.message);
  };
  return freeze(tail);
}

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
  // sdkProxy comes with the SDK part of the runtime (sdk-runtime.ts), compiled in when the
  // host passes the table's callbacks.
  if (describeMethod) cloudflare = sdkProxy(cloudflare, exchange, describeMethod, methodNames);
  defineProperty(globalThis, 'cloudflare', { value: cloudflare, enumerable: true });
  defineProperty(globalThis, 'r2', { value: makeR2(exchange), enumerable: true });
  defineProperty(globalThis, 'tail', { value: makeTail(exchange), enumerable: true });
  defineProperty(globalThis, 'console', { value: makeConsole(log), enumerable: true });
}

// Execute isolates: called once by the call that takes the isolate, before its code runs.
function begin(accountId) {
  callAccountId = accountId === null ? undefined : accountId;
  defineProperty(globalThis, 'accountId', { value: callAccountId, enumerable: true });
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

`;

const RUNTIME_END = String.raw`
if (mode === 'search') {
  const spec = $1;
  tameOverrides();
  deepFreeze([spec]);
  defineProperty(globalThis, 'spec', { value: spec, enumerable: true });
  deepFreeze([globalThis, ...hiddenIntrinsics()]);
}

return freeze({ run, makeAllowed, makeConsole, setup, begin });
`;

export const ISOLATE_RUNTIME_SOURCE = RUNTIME_BODY + RUNTIME_END;

/**
 * The runtime as a script whose value is a function of `($0, $1)`. Unlike an `evalClosure`
 * body, a script can be compiled from V8's code cache: execute builds an isolate per call,
 * and compiling the runtime from source was most of the cost of loading it.
 */
export const ISOLATE_RUNTIME_SCRIPT = `(function ($0, $1) {\n${ISOLATE_RUNTIME_SOURCE}\n})`;

/** The same with SDK-style methods (`cloudflare.dns.records.list(…)`), for execute. */
export const SDK_ISOLATE_RUNTIME_SCRIPT = `(function ($0, $1) {\n${RUNTIME_BODY}${SDK_RUNTIME_SOURCE}${RUNTIME_END}\n})`;
