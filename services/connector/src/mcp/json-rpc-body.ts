/** One message of a `POST /mcp` body as Warden reads it before the SDK does. */
export type BodyMessage = { method?: unknown; params?: Record<string, unknown> } | null;

/** The JSON-RPC messages of a `POST /mcp` body, one or a batch, as the SDK will read them. */
export function messagesOf(body: unknown): BodyMessage[] {
  return (Array.isArray(body) ? body : [body]) as BodyMessage[];
}

/** Whether a request failed because its body is not JSON (Fastify's parser refused it). */
export function isBodyParseError(error: unknown): boolean {
  const e = error as { code?: unknown; statusCode?: unknown } | null;
  return (
    e?.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (error instanceof SyntaxError && e?.statusCode === 400)
  );
}

/**
 * The JSON-RPC error for a lone `tools/call` request whose params are not what the method takes
 * (-32602, naming the field and the fix), or null. The SDK answers these as an internal error
 * (-32603) with its validator's raw issues; a batch is left to it.
 */
export function invalidToolCall(body: unknown) {
  if (Array.isArray(body) || typeof body !== 'object' || body === null) return null;
  const m = body as { method?: unknown; id?: unknown; params?: unknown };
  if (m.method !== 'tools/call' || (typeof m.id !== 'string' && typeof m.id !== 'number')) return null;
  const params = m.params as { name?: unknown; arguments?: unknown } | null | undefined;
  const problem =
    typeof params !== 'object' || params === null || Array.isArray(params)
      ? 'params: must be an object {name, arguments}'
      : typeof params.name !== 'string'
        ? "params.name: must be the tool's name (cloudflare_search or cloudflare_execute)"
        : params.arguments !== undefined &&
            (typeof params.arguments !== 'object' ||
              params.arguments === null ||
              Array.isArray(params.arguments))
          ? `params.arguments: must be an object of the tool's arguments, such as {"code": "async () => …"}, not ${Array.isArray(params.arguments) ? 'an array' : params.arguments === null ? 'null' : `a ${typeof params.arguments}`}`
          : null;
  return problem
    ? { jsonrpc: '2.0', id: m.id, error: { code: -32602, message: `Invalid params: ${problem}` } }
    : null;
}
