import { lazy, Suspense, useEffect, useState } from "react";
import { NavLink, Navigate, Route, Routes } from "react-router-dom";
import { clearKey, get, getKey } from "./api.js";
import { CallerContext } from "./components/Caller.jsx";
import KeyGate from "./components/KeyGate.jsx";

// the registry is the first page: loaded with the app, not behind a Suspense boundary
// (React holds a revealed boundary back ~300 ms, which would delay the list's first request)
import ModelRegistry from "./pages/registry/ModelRegistry.jsx";

// every other page is its own chunk: a page loads only the libraries it draws with
const PredictionDashboard = lazy(() => import("./pages/predictions/PredictionDashboard.jsx"));
const MemoryGraph = lazy(() => import("./pages/memory/MemoryGraph.jsx"));
const AIAssistantConfig = lazy(() => import("./pages/assistant/AIAssistantConfig.jsx"));
const ModelTraining = lazy(() => import("./pages/training/ModelTraining.jsx"));

const PAGES = [
  { path: "/registry", label: "Model registry", element: <ModelRegistry /> },
  { path: "/predictions", label: "Predictions", element: <PredictionDashboard /> },
  { path: "/memory", label: "Memory graph", element: <MemoryGraph /> },
  { path: "/assistant", label: "Assistant", element: <AIAssistantConfig /> },
  { path: "/training", label: "Training", element: <ModelTraining /> },
];

export default function App() {
  const [key, setKeyState] = useState(getKey());
  // undefined until /me answers, null if it could not be asked (see src/may.js)
  const [caller, setCaller] = useState(undefined);
  useEffect(() => {
    const out = () => {
      setKeyState(null);
      setCaller(undefined);
    };
    window.addEventListener("aimm:signed-out", out);
    return () => window.removeEventListener("aimm:signed-out", out);
  }, []);
  // a key kept from before a reload: who it is (the pages show their data meanwhile, with
  // their commands disabled until the answer says which the key may run)
  useEffect(() => {
    if (!key || caller !== undefined) return;
    // a 401 signs out (api.js); any other failure enables every command, and the API
    // refuses what the key may not do with a problem the page shows
    get("/api/v1/me").then(
      ({ data }) => setCaller(data),
      () => setCaller(null),
    );
  }, [key, caller]);
  const signedIn = (newKey, who) => {
    setCaller(who);
    setKeyState(newKey);
  };

  return (
    <CallerContext.Provider value={caller}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">aimm</span>
        {key && (
          <nav aria-label="Pages">
            <ul>
              {PAGES.map((page) => (
                <li key={page.path}>
                  <NavLink to={page.path}>{page.label}</NavLink>
                </li>
              ))}
            </ul>
          </nav>
        )}
        {key && caller && (
          <span className="who" title={caller.key_id ? `key ${caller.key_id}` : undefined}>
            {caller.principal} · {caller.roles.join(", ")}
          </span>
        )}
        {key && (
          <button type="button" className="quiet" onClick={clearKey}>
            Forget key
          </button>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {key ? (
          <Suspense fallback={<p role="status">Loading…</p>}>
            <Routes>
              {PAGES.map((page) => (
                <Route key={page.path} path={`${page.path}/*`} element={page.element} />
              ))}
              <Route path="*" element={<Navigate to="/registry" replace />} />
            </Routes>
          </Suspense>
        ) : (
          <KeyGate onKey={signedIn} />
        )}
      </main>
    </CallerContext.Provider>
  );
}
