import { createContext, useContext, useId } from "react";

/**
 * The signed-in key as `GET /api/v1/me` describes it: principal, roles and `may` (what it
 * may do, from the same table the API's guards use). The console disables what the key
 * may not do and says why; the API checks every request on its own all the same.
 */
export const CallerContext = createContext(null);

export function useCaller() {
  return useContext(CallerContext);
}

/** Whether the key may do `permission`; while `/me` has not answered yet, it may. */
export function useMay(permission) {
  const caller = useCaller();
  return caller ? Boolean(caller.may?.[permission]) : true;
}

/** Why a control is disabled, in the words a person needs: which key, which roles. */
export function refusal(caller, what) {
  const roles = caller?.roles?.length ? caller.roles.join(", ") : "no role";
  return `This key (${caller?.principal ?? "unknown"}: ${roles}) may not ${what}.`;
}

/**
 * The controls of a command, disabled with the reason when the key may not do it (a
 * disabled fieldset disables every control inside it, natively).
 */
export function Needs({ may, what, children }) {
  const caller = useCaller();
  const allowed = useMay(may);
  const id = useId();
  if (allowed) return children;
  return (
    <fieldset className="needs" disabled aria-describedby={id}>
      <p id={id} className="hint needs-why">
        {refusal(caller, what)}
      </p>
      {children}
    </fieldset>
  );
}
