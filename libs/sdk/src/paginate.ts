export interface Page<T> {
  readonly items: readonly T[];
  readonly nextPageToken: string | null;
}

/**
 * Walks a `page_token` / `next_page_token` listing item by item. Pages are fetched lazily,
 * so breaking out of a `for await` stops fetching. A server that hands back the token it
 * was given would loop forever; that is treated as the end rather than trusted.
 */
export async function* paginate<T>(
  fetchPage: (pageToken: string | undefined) => Promise<Page<T>>,
): AsyncGenerator<T, void, undefined> {
  let token: string | undefined;
  for (;;) {
    const page = await fetchPage(token);
    yield* page.items;
    if (page.nextPageToken === null || page.nextPageToken === token) return;
    token = page.nextPageToken;
  }
}
