import { invalidRequest } from '@warden/core';

/**
 * Keyset pagination cursors: opaque base64url of `[created_at ISO, id]`. Ordering by
 * (created_at, id) is stable under inserts, unlike OFFSET.
 */
export interface PageCursor {
  createdAt: Date;
  id: string;
}

export function encodeCursor(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id])).toString('base64url');
}

export function decodeCursor(token: string, field = 'page_token'): PageCursor {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'string' &&
      typeof parsed[1] === 'string'
    ) {
      const createdAt = new Date(parsed[0]);
      if (!Number.isNaN(createdAt.getTime())) return { createdAt, id: parsed[1] };
    }
  } catch {
    // fall through to the error below
  }
  throw invalidRequest(
    field,
    'is not a page token this API issued; pass next_page_token from the previous page',
  );
}
