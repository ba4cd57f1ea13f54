import { Suspense, lazy, useCallback, useEffect, useState } from 'react';
import { Link, Redirect, Route, Router, Switch, useLocation } from 'wouter';
import { api, onSignedOut, setCsrfToken } from './api.ts';
import { SignIn } from './pages/SignIn.tsx';
import type { Session } from './types.ts';

const Overview = lazy(() => import('./pages/Overview.tsx'));
const Identities = lazy(() => import('./pages/Identities.tsx'));
const Audit = lazy(() => import('./pages/Audit.tsx'));
const Approvals = lazy(() => import('./pages/Approvals.tsx'));
const Mcp = lazy(() => import('./pages/Mcp.tsx'));
const PolicyPage = lazy(() => import('./pages/Policy.tsx'));
const Sinks = lazy(() => import('./pages/Sinks.tsx'));
const Sso = lazy(() => import('./pages/Sso.tsx'));
const Tenants = lazy(() => import('./pages/Tenants.tsx'));
const Platform = lazy(() => import('./pages/Platform.tsx'));

const TENANT_PAGES = [
  { path: '/', label: 'Overview' },
  { path: '/identities', label: 'Identities' },
  { path: '/audit', label: 'Audit explorer' },
  { path: '/approvals', label: 'Approvals' },
  { path: '/mcp', label: 'MCP' },
  { path: '/sso', label: 'Single sign-on' },
  { path: '/policy', label: 'Policy' },
  { path: '/sinks', label: 'SIEM sinks' },
];
const OPERATOR_PAGES = [
  { path: '/', label: 'Tenants' },
  { path: '/platform', label: 'Spec and keys' },
];

function Nav({ pages }: { pages: typeof TENANT_PAGES }) {
  const [location] = useLocation();
  return (
    <nav aria-label="Console">
      <ul>
        {pages.map((p) => (
          <li key={p.path}>
            <Link href={p.path} aria-current={location === p.path ? 'page' : undefined}>
              {p.label}
            </Link>
          </li>
        ))}
      </ul>
    </nav>
  );
}

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);

  const accept = useCallback((next: Session | null) => {
    setCsrfToken(next?.csrf_token ?? null);
    setSession(next);
  }, []);

  useEffect(() => {
    api<{ session: Session }>('GET', '/console/api/session').then(
      (r) => accept(r.session),
      () => accept(null),
    );
    return onSignedOut(() => accept(null));
  }, [accept]);

  const signOut = async () => {
    await api('DELETE', '/console/api/session').catch(() => undefined);
    accept(null);
  };

  if (session === undefined) {
    return (
      <main className="centered">
        <p role="status">Loading…</p>
      </main>
    );
  }
  if (session === null) return <SignIn onSignedIn={accept} />;

  const operator = session.kind === 'operator';
  return (
    <Router base="/console">
      <div className="shell">
        <header className="topbar">
          <span className="brand">Warden console</span>
          <span className="who">
            {operator
              ? 'Operator'
              : `Tenant: ${session.tenant?.name ?? ''}${session.sso_identifier ? ` (${session.sso_identifier})` : ''}`}
          </span>
          <button type="button" className="secondary" onClick={() => void signOut()}>
            Sign out
          </button>
        </header>
        <Nav pages={operator ? OPERATOR_PAGES : TENANT_PAGES} />
        <main id="content">
          <Suspense fallback={<p role="status">Loading…</p>}>
            {operator ? (
              <Switch>
                <Route path="/" component={Tenants} />
                <Route path="/platform" component={Platform} />
                <Route>
                  <Redirect to="/" />
                </Route>
              </Switch>
            ) : (
              <Switch>
                <Route path="/" component={Overview} />
                <Route path="/identities" component={Identities} />
                <Route path="/audit" component={Audit} />
                <Route path="/approvals" component={Approvals} />
                <Route path="/mcp" component={Mcp} />
                <Route path="/sso" component={Sso} />
                <Route path="/policy" component={PolicyPage} />
                <Route path="/sinks" component={Sinks} />
                <Route>
                  <Redirect to="/" />
                </Route>
              </Switch>
            )}
          </Suspense>
        </main>
      </div>
    </Router>
  );
}
