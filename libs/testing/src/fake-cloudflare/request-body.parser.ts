import type { IncomingMessage } from 'node:http';
import { CfError, malformedJson } from './fake-cloudflare.errors.ts';

export interface MultipartPart {
  readonly name: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly data: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function readBody(req: IncomingMessage, limitBytes: number): Promise<Buffer> {
  // The client left while the request waited (injected latency): a request without a body was
  // received in full all the same.
  if (req.destroyed) {
    return req.complete && !Number(req.headers['content-length'] ?? 0)
      ? Promise.resolve(EMPTY)
      : Promise.reject(
          new CfError(400, [{ code: 400, message: 'the client went away before sending the whole request' }]),
        );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let refused = false;
    req.on('data', (chunk: Buffer) => {
      if (refused) return;
      size += chunk.length;
      if (size > limitBytes) {
        refused = true;
        reject(new CfError(413, [{ code: 413, message: `Request body exceeds ${limitBytes} bytes` }]));
        return;
      }
      chunks.push(chunk);
    });
    const done = () => {
      if (!refused)
        resolve(chunks.length === 0 ? EMPTY : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    req.on('end', done);
    // A request received in full is carried out even when its client goes away before the
    // answer (as Cloudflare does): only a request cut short is dropped.
    req.on('close', () => {
      if (req.complete) done();
      else
        reject(
          new CfError(400, [{ code: 400, message: 'the client went away before sending the whole request' }]),
        );
    });
    req.on('error', reject);
  });
}

export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) throw malformedJson();
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    throw malformedJson();
  }
}

/** The bare media type, lowercased: `multipart/form-data; boundary=x` → `multipart/form-data`. */
export function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase();
}

function headerParam(header: string, name: string): string | null {
  const match = new RegExp(`(?:^|;)\\s*${name}\\*?=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;]*))`, 'i').exec(
    header,
  );
  if (!match) return null;
  return (match[1] ?? match[2] ?? '').replace(/\\(.)/g, '$1').trim();
}

/** RFC 7578 multipart/form-data, enough for what fetch's FormData, curl -F and wrangler send. */
export function parseMultipart(body: Buffer, contentType: string | undefined): MultipartPart[] {
  const boundary = headerParam(contentType ?? '', 'boundary');
  if (!boundary) throw new CfError(400, [{ code: 10021, message: 'multipart/form-data without a boundary' }]);
  const delimiter = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let position = body.indexOf(delimiter);
  if (position < 0) throw new CfError(400, [{ code: 10021, message: 'malformed multipart body' }]);
  for (;;) {
    position += delimiter.length;
    if (body[position] === 0x2d && body[position + 1] === 0x2d) break; // closing "--"
    if (body[position] === 0x0d && body[position + 1] === 0x0a) position += 2;
    const headerEnd = body.indexOf('\r\n\r\n', position);
    if (headerEnd < 0) throw new CfError(400, [{ code: 10021, message: 'malformed multipart body' }]);
    const next = body.indexOf(delimiter, headerEnd + 4);
    if (next < 0) throw new CfError(400, [{ code: 10021, message: 'malformed multipart body' }]);
    const headers = body.subarray(position, headerEnd).toString('utf8').split('\r\n');
    let name = '';
    let filename: string | null = null;
    let partType: string | null = null;
    for (const line of headers) {
      const colon = line.indexOf(':');
      if (colon < 0) continue;
      const key = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (key === 'content-disposition') {
        name = headerParam(value, 'name') ?? '';
        filename = headerParam(value, 'filename');
      } else if (key === 'content-type') {
        partType = value;
      }
    }
    // The part's data ends before the CRLF that precedes the next delimiter.
    const dataEnd = body[next - 2] === 0x0d && body[next - 1] === 0x0a ? next - 2 : next;
    parts.push({ name, filename, contentType: partType, data: body.subarray(headerEnd + 4, dataEnd) });
    position = next;
  }
  return parts;
}
