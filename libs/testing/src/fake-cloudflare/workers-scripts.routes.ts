import { badRequest } from './fake-cloudflare.errors.ts';
import { ok, paginate, param, raw, routeAccount } from './fake-cloudflare.router.ts';
import type { RouteContext, RouteDefinition } from './fake-cloudflare.router.ts';
import { workerScriptJson } from './fake-cloudflare.serializers.ts';
import type { WorkerModule, WorkerScriptRecord } from './fake-cloudflare.state.ts';
import { mediaType, parseJsonBody, parseMultipart } from './request-body.parser.ts';

const SCRIPT_PAGES = { defaultPerPage: 10_000, minPerPage: 1, maxPerPage: 10_000 };
const WORKER_NAME = /^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$/;
const JS_TYPES = new Set(['application/javascript', 'text/javascript']);

function scriptNotFound() {
  return badRequest(10007, 'This Worker does not exist on your account.', 404);
}

function validation(message: string) {
  return badRequest(10021, message);
}

function existingScript(ctx: RouteContext): WorkerScriptRecord {
  const script = ctx.state.getWorkerScript(routeAccount(ctx).id, param(ctx, 'script_name'));
  if (!script) throw scriptNotFound();
  return script;
}

interface Upload {
  readonly modules: WorkerModule[];
  readonly mainModule: string;
  readonly usesModules: boolean;
  readonly compatibilityDate: string | null;
  readonly bindings: readonly unknown[];
}

/** multipart/form-data with a `metadata` JSON part naming `main_module` (ES modules) or `body_part`. */
function multipartUpload(ctx: RouteContext): Upload {
  const parts = parseMultipart(ctx.body, ctx.headers['content-type']);
  const metadataPart = parts.find((p) => p.name === 'metadata');
  if (!metadataPart) throw validation('Missing metadata part in the multipart upload');
  let metadata: Record<string, unknown>;
  try {
    const parsed = parseJsonBody(metadataPart.data);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
    metadata = parsed as Record<string, unknown>;
  } catch {
    throw validation('metadata must be a JSON object');
  }
  const modules: WorkerModule[] = parts
    .filter((p) => p !== metadataPart)
    .map((p) => ({
      name: p.filename ?? p.name,
      contentType: p.contentType ?? 'application/octet-stream',
      content: Buffer.from(p.data),
    }));
  const find = (name: string) => modules.find((m) => m.name === name) ?? null;
  const byPart = (name: string) => {
    const part = parts.find((p) => p !== metadataPart && (p.name === name || p.filename === name));
    return part ? find(part.filename ?? part.name) : null;
  };
  const mainModule = typeof metadata.main_module === 'string' ? metadata.main_module : null;
  const bodyPart = typeof metadata.body_part === 'string' ? metadata.body_part : null;
  let main: WorkerModule | null;
  let usesModules: boolean;
  if (mainModule !== null) {
    main = byPart(mainModule);
    usesModules = true;
    if (!main) throw validation(`No such module "${mainModule}".`);
  } else if (bodyPart !== null) {
    main = byPart(bodyPart);
    usesModules = false;
    if (!main) throw validation(`No such part "${bodyPart}" in the upload.`);
  } else if (modules.length === 1) {
    main = modules[0]!;
    usesModules = main.contentType.includes('module');
  } else {
    throw validation('metadata must name the main module (main_module) or the script part (body_part)');
  }
  return {
    modules,
    mainModule: main.name,
    usesModules,
    compatibilityDate: typeof metadata.compatibility_date === 'string' ? metadata.compatibility_date : null,
    bindings: Array.isArray(metadata.bindings) ? metadata.bindings : [],
  };
}

export const workersScriptRoutes: readonly RouteDefinition[] = [
  {
    method: 'GET',
    path: '/accounts/{account_id}/workers/scripts',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.list'],
    resource: 'account',
    handler: (ctx) => {
      const scripts = [...(ctx.state.workerScripts.get(routeAccount(ctx).id)?.values() ?? [])].sort((a, b) =>
        a.name < b.name ? -1 : 1,
      );
      const { result, resultInfo } = paginate(ctx, scripts, SCRIPT_PAGES);
      return ok(result.map(workerScriptJson), { resultInfo });
    },
  },
  {
    method: 'PUT',
    path: '/accounts/{account_id}/workers/scripts/{script_name}',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.create'],
    resource: 'account',
    handler: (ctx) => {
      const name = param(ctx, 'script_name');
      if (!WORKER_NAME.test(name)) {
        throw badRequest(
          10016,
          'Invalid Worker name: use at most 63 lowercase letters, digits, "-" or "_", starting and ending with a letter or digit.',
        );
      }
      const type = mediaType(ctx.headers['content-type']);
      let upload: Upload;
      if (type === 'multipart/form-data') {
        upload = multipartUpload(ctx);
      } else if (JS_TYPES.has(type)) {
        upload = {
          modules: [{ name: 'script.js', contentType: type, content: Buffer.from(ctx.body) }],
          mainModule: 'script.js',
          usesModules: false,
          compatibilityDate: null,
          bindings: [],
        };
      } else {
        throw validation(
          `Unsupported Content-Type "${type}": use multipart/form-data or application/javascript`,
        );
      }
      const main = upload.modules.find((m) => m.name === upload.mainModule);
      if (!main || main.content.toString('utf8').trim() === '') {
        throw validation('No event handlers were registered. This script does nothing.');
      }
      const script = ctx.state.putWorkerScript({ accountId: routeAccount(ctx).id, name, ...upload });
      return ok({ ...workerScriptJson(script), startup_time_ms: 1 });
    },
  },
  {
    method: 'GET',
    path: '/accounts/{account_id}/workers/scripts/{script_name}',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.read'],
    resource: 'account',
    handler: (ctx) => {
      const script = existingScript(ctx);
      const main = script.modules.find((m) => m.name === script.mainModule);
      return raw(main?.content ?? Buffer.alloc(0), 'application/javascript', { etag: `"${script.etag}"` });
    },
  },
  {
    method: 'DELETE',
    path: '/accounts/{account_id}/workers/scripts/{script_name}',
    fallbackPermissions: ['com.cloudflare.edge.worker.script.delete'],
    resource: 'account',
    handler: (ctx) => {
      const script = existingScript(ctx);
      ctx.state.deleteWorkerScript(script.accountId, script.name);
      return ok(null);
    },
  },
];
