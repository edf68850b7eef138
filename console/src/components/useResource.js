import { useCallback, useEffect, useRef, useState } from "react";

/**
 * Loads `load(signal)` when `deps` change; returns { data, error, loading, reload }.
 * An answer that arrives after a newer load started is dropped.
 */
export default function useResource(load, deps) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(controller.signal).then(
      (data) => mine === generation.current && setState({ data, error: null, loading: false }),
      (error) => {
        if (error?.name === "AbortError") return;
        if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
      },
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, deps);
  useEffect(run, [run]);
  return { ...state, reload: run };
}
