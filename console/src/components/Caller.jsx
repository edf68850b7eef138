import { createContext, useContext, useId } from "react";
import { may } from "../may.js";

/**
 * The signed-in key as `GET /api/v1/me` describes it: principal, roles and `may` (what it
 * may do, from the same table the API's guards use). The console disables what the key
 * may not do and says why; the API checks every request on its own all the same.
 * `undefined` while `/me` has not answered, `null` if it could not be asked (src/may.js).
 */
export const CallerContext = createContext(null);

export function useCaller() {
  return useContext(CallerContext);
}

/** Whether the key may do `permission`: true, false, or null while `/me` has not answered. */
export function useMay(permission) {
  return may(useCaller(), permission);
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
export function Needs({ may: permission, what, children }) {
  const caller = useCaller();
  const allowed = useMay(permission);
  const id = useId();
  if (allowed) return children;
  if (allowed === null) {
    // not known yet: disabled, without a reason to give
    return (
      <fieldset className="needs" disabled aria-busy="true">
        {children}
      </fieldset>
    );
  }
  return (
    <fieldset className="needs" disabled aria-describedby={id}>
      <p id={id} className="hint needs-why">
        {refusal(caller, what)}
      </p>
      {children}
    </fieldset>
  );
}
