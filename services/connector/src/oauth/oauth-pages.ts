import { createHash } from 'node:crypto';

/**
 * The sign-in pages: plain server-rendered HTML, no script, one inline stylesheet allowed by
 * its hash. Every value that reaches a page goes through `html`.
 */

const STYLE = `
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
main{max-width:34rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.05rem;margin-bottom:.3rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}dt{color:#5b6270}dd{margin:0;word-break:break-all}
ul{padding-left:1.2rem}label{display:block;margin:.8rem 0 .3rem}
input[type=email]{width:100%;box-sizing:border-box;padding:.5rem;font:inherit;border:1px solid #b9bec7;border-radius:4px}
button{font:inherit;padding:.55rem 1.1rem;border-radius:4px;border:1px solid #1f5fd1;background:#1f5fd1;color:#fff;cursor:pointer;margin:.8rem .5rem 0 0}
button.secondary{background:#fff;color:#1f5fd1}.error{color:#b00020}.muted{color:#5b6270;font-size:.9rem}
form.inline{display:inline}
`;
const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE, 'utf8').digest('base64')}'`;

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Escapes text for HTML content and attribute values. */
export function html(value: string | number): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

export interface Page {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Forms post to Warden itself; the redirects that follow a post go to the client's redirect URI,
 * and browsers hold those to `form-action` too. The way on to an identity provider after the
 * SSO form is a page that refreshes to it (`continuePage`), not a redirect, so no IdP (and no
 * whole scheme, `https:`) is ever a form target.
 */
export function pageHeaders(formTargets: readonly string[]): Record<string, string> {
  const formAction = ["'self'", ...formTargets].join(' ');
  return {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': `default-src 'none'; style-src ${STYLE_HASH}; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
    'x-frame-options': 'DENY',
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  };
}

export function page(
  title: string,
  content: string,
  options: { status?: number; formTargets?: readonly string[]; refreshTo?: string } = {},
): Page {
  const refresh = options.refreshTo
    ? `<meta http-equiv="refresh" content="0;url=${html(options.refreshTo)}">`
    : '';
  return {
    status: options.status ?? 200,
    headers: pageHeaders(options.formTargets ?? []),
    body: `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">${refresh}
<title>${html(title)} · Warden</title><style>${STYLE}</style></head>
<body><main>
<h1>${html(title)}</h1>
${content}
</main></body></html>`,
  };
}

/** On to the organization's identity provider, after the SSO form (see `pageHeaders`). */
export function continuePage(url: string): Page {
  return page(
    'Continuing to your organization’s sign-in',
    `<p>Taking you to your organization’s sign-in page. If nothing happens, <a href="${html(url)}">continue</a>.</p>`,
    { refreshTo: url },
  );
}

export function errorPage(title: string, message: string, status = 400): Page {
  return page(title, `<p class="error">${html(message)}</p>`, { status });
}

export interface LoginView {
  readonly uid: string;
  readonly clientName: string;
  readonly error?: string;
  readonly email?: string;
  readonly formTargets: readonly string[];
}

export function loginPage(view: LoginView): Page {
  const action = `/oauth/interaction/${encodeURIComponent(view.uid)}`;
  return page(
    'Sign in to use Cloudflare through Warden',
    `<p><strong>${html(view.clientName)}</strong> wants to connect to Warden on your behalf.</p>
${view.error ? `<p class="error">${html(view.error)}</p>` : ''}
<h2>With your organization’s single sign-on</h2>
<form method="post" action="${html(action)}/sso">
<label for="email">Work email</label>
<input id="email" type="email" name="email" autocomplete="email" required value="${html(view.email ?? '')}">
<button type="submit">Continue with SSO</button>
</form>
<h2>With a sign-in link</h2>
<p class="muted">If your company’s app gives you a Warden sign-in link, open it in this browser now; this sign-in continues from there.</p>
<form method="post" action="${html(action)}/abort" class="inline"><button type="submit" class="secondary">Cancel</button></form>`,
    { formTargets: view.formTargets },
  );
}

export interface ConsentView {
  readonly uid: string;
  readonly tenantName: string;
  readonly identifier: string;
  readonly clientName: string;
  readonly clientId: string;
  readonly redirectHost: string;
  readonly accounts: ReadonlyArray<{ connectionName: string; label: string }>;
  readonly tools: ReadonlyArray<{ name: string; summary: string }>;
  readonly policyNote: string | null;
  readonly formTargets: readonly string[];
}

export function consentPage(view: ConsentView): Page {
  const action = `/oauth/interaction/${encodeURIComponent(view.uid)}`;
  const accounts =
    view.accounts.length > 0
      ? `<ul>${view.accounts.map((a) => `<li>${html(a.label)} <span class="muted">(${html(a.connectionName)})</span></li>`).join('')}</ul>`
      : '<p class="muted">No Cloudflare account is connected for you yet: the tools will have nothing to act on until one is.</p>';
  const tools = `<ul>${view.tools.map((t) => `<li><strong>${html(t.name)}</strong>: ${html(t.summary)}</li>`).join('')}</ul>`;
  return page(
    'Allow access to Cloudflare?',
    `<p><strong>${html(view.clientName)}</strong> asks to act on Cloudflare as you, through Warden.</p>
<dl>
<dt>Organization</dt><dd>${html(view.tenantName)}</dd>
<dt>Signed in as</dt><dd>${html(view.identifier)}</dd>
<dt>Application</dt><dd>${html(view.clientName)}</dd>
<dt>Client id</dt><dd>${html(view.clientId)}</dd>
<dt>Returns to</dt><dd>${html(view.redirectHost)}</dd>
</dl>
<h2>Connected accounts it will reach</h2>
${accounts}
<h2>Tools it will use</h2>
${tools}
${view.policyNote ? `<p class="muted">${html(view.policyNote)}</p>` : ''}
<p class="muted">Your answer is remembered for this application until your organization revokes it.</p>
<form method="post" action="${html(action)}/consent" class="inline"><button type="submit">Allow</button></form>
<form method="post" action="${html(action)}/abort" class="inline"><button type="submit" class="secondary">Deny</button></form>`,
    { formTargets: view.formTargets },
  );
}

export function loginLinkPage(view: { token: string; identifier: string; tenantName: string }): Page {
  return page(
    'Sign in to Warden',
    `<p>Sign in to <strong>${html(view.tenantName)}</strong>’s Warden as <strong>${html(view.identifier)}</strong>?</p>
<form method="post" action="/oauth/link">
<input type="hidden" name="token" value="${html(view.token)}">
<button type="submit">Sign in</button>
</form>`,
  );
}

export function signedInPage(identifier: string, minutes: number): Page {
  return page(
    'Signed in',
    `<p>You are signed in as <strong>${html(identifier)}</strong> in this browser for the next ${html(minutes)} minutes.</p>
<p>Go back to your MCP client and connect to Warden: it will open this browser and ask for your consent.</p>`,
  );
}
