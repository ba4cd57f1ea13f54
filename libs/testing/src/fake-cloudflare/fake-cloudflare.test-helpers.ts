import { readFileSync } from 'node:fs';
import { specFixturePath } from '../spec-fixture.ts';

/** The shared Cloudflare OpenAPI document the tests drive permissions from (never copied into the repo). */
const SPEC_PATH = specFixturePath();

let parsed: unknown;
/** Parsed once per test file. */
export function loadSpec(): unknown {
  parsed ??= JSON.parse(readFileSync(SPEC_PATH, 'utf8')) as unknown;
  return parsed;
}

type RequestBody = NonNullable<RequestInit['body']>;

export type Credential = { token: string } | { email: string; key: string } | null;

export interface ApiResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly json: {
    success?: boolean;
    result?: unknown;
    errors?: Array<{ code: number; message: string; error_chain?: Array<{ code: number; message: string }> }>;
    messages?: Array<{ code: number; message: string }>;
    result_info?: Record<string, unknown>;
    data?: unknown;
  };
  readonly text: string;
}

function authHeaders(credential: Credential): Record<string, string> {
  if (!credential) return {};
  return 'token' in credential
    ? { authorization: `Bearer ${credential.token}` }
    : { 'x-auth-email': credential.email, 'x-auth-key': credential.key };
}

/** A thin fetch wrapper: JSON in, body parsed when it is JSON. */
export async function api(
  baseUrl: string,
  credential: Credential,
  method: string,
  path: string,
  init: {
    body?: unknown;
    rawBody?: RequestBody;
    contentType?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<ApiResponse> {
  const headers: Record<string, string> = { ...authHeaders(credential), ...init.headers };
  let body: RequestBody | undefined;
  if (init.rawBody !== undefined) {
    body = init.rawBody;
    if (init.contentType) headers['content-type'] = init.contentType;
  } else if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] = 'application/json';
  }
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
  });
  const text = await response.text();
  let json: ApiResponse['json'] = {};
  if ((response.headers.get('content-type') ?? '').includes('json'))
    json = JSON.parse(text) as ApiResponse['json'];
  return { status: response.status, headers: response.headers, json, text };
}
