/** One message of a `POST /mcp` body as Warden reads it before the SDK does. */
export type BodyMessage = { method?: unknown; params?: Record<string, unknown> } | null;

/** The JSON-RPC messages of a `POST /mcp` body, one or a batch, as the SDK will read them. */
export function messagesOf(body: unknown): BodyMessage[] {
  return (Array.isArray(body) ? body : [body]) as BodyMessage[];
}
