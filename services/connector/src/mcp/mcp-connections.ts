/**
 * The live MCP connections of this replica (in-flight streamable HTTP requests and SSE
 * streams), so offboarding or token revocation (published on the bus as an invalidation)
 * can close them wherever they are.
 */
export interface McpConnectionKey {
  readonly tenantId: string;
  readonly identifier: string;
  readonly tokenId: string;
}

interface Entry extends McpConnectionKey {
  close(): void;
}

export class McpConnections {
  readonly #entries = new Set<Entry>();

  add(key: McpConnectionKey, close: () => void): () => void {
    const entry: Entry = { ...key, close };
    this.#entries.add(entry);
    return () => this.#entries.delete(entry);
  }

  closeWhere(match: (key: McpConnectionKey) => boolean): number {
    let closed = 0;
    for (const entry of [...this.#entries]) {
      if (!match(entry)) continue;
      this.#entries.delete(entry);
      entry.close();
      closed++;
    }
    return closed;
  }

  get size(): number {
    return this.#entries.size;
  }
}
