import { parse } from 'node-html-parser';
import { CookieJar } from 'tough-cookie';

export interface UaPage {
  readonly url: string;
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

/**
 * A scripted browser without JavaScript: follows redirects and `<meta http-equiv="refresh">`,
 * keeps cookies, reads a page's forms and submits them the way a browser would (the pages under
 * test need no script).
 */
export class ScriptedUserAgent {
  readonly jar = new CookieJar();
  /** Every URL the agent was sent to, in order. */
  readonly visited: string[] = [];

  readonly #stopAt: readonly string[];

  /** Stops following redirects at URLs with these prefixes (e.g. the client's redirect URI). */
  constructor(stopAt: readonly string[] = []) {
    this.#stopAt = stopAt;
  }

  async get(url: string): Promise<UaPage> {
    return this.request(url, { method: 'GET' });
  }

  async request(url: string, init: { method: string; body?: URLSearchParams }): Promise<UaPage> {
    let current = url;
    let method = init.method;
    let body = init.body;
    for (let hops = 0; hops < 20; hops++) {
      this.visited.push(current);
      if (this.#stopAt.some((prefix) => current.startsWith(prefix))) {
        return { url: current, status: 0, headers: new Headers(), body: '' };
      }
      const headers = new Headers({ accept: 'text/html' });
      const cookie = await this.jar.getCookieString(current);
      if (cookie) headers.set('cookie', cookie);
      if (body) headers.set('content-type', 'application/x-www-form-urlencoded');
      const response = await fetch(current, {
        method,
        headers,
        redirect: 'manual',
        ...(body ? { body: body.toString() } : {}),
      });
      for (const setCookie of response.headers.getSetCookie()) {
        await this.jar.setCookie(setCookie, current);
      }
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        current = new URL(location, current).href;
        // 303 (and, as browsers do, 301/302 after a POST) continue with GET.
        if (response.status !== 307 && response.status !== 308) {
          method = 'GET';
          body = undefined;
        }
        continue;
      }
      const text = await response.text();
      const refresh = parse(text).querySelector('meta[http-equiv="refresh"]')?.getAttribute('content');
      const to = refresh ? /^\s*0\s*;\s*url=(.+)$/i.exec(refresh)?.[1] : undefined;
      if (response.status === 200 && to) {
        current = new URL(to.trim(), current).href;
        method = 'GET';
        body = undefined;
        continue;
      }
      return { url: current, status: response.status, headers: response.headers, body: text };
    }
    throw new Error(`too many redirects from ${url}`);
  }

  /** Fills and submits the form whose action contains `actionPart` (the first form if omitted). */
  async submit(page: UaPage, fields: Record<string, string> = {}, actionPart?: string): Promise<UaPage> {
    const root = parse(page.body);
    const form = root
      .querySelectorAll('form')
      .find((f) => actionPart === undefined || (f.getAttribute('action') ?? '').includes(actionPart));
    if (!form) throw new Error(`no form ${actionPart ?? ''} on ${page.url}:\n${page.body.slice(0, 2000)}`);
    const data = new URLSearchParams();
    for (const input of form.querySelectorAll('input')) {
      const name = input.getAttribute('name');
      const type = input.getAttribute('type') ?? 'text';
      if (!name || type === 'submit') continue;
      if ((type === 'radio' || type === 'checkbox') && input.getAttribute('checked') === undefined) continue;
      data.set(name, input.getAttribute('value') ?? '');
    }
    for (const [name, value] of Object.entries(fields)) data.set(name, value);
    const action = new URL(form.getAttribute('action') ?? page.url, page.url).href;
    const method = (form.getAttribute('method') ?? 'GET').toUpperCase();
    if (method === 'GET') {
      const target = new URL(action);
      target.search = data.toString();
      return this.get(target.href);
    }
    return this.request(action, { method: 'POST', body: data });
  }
}
