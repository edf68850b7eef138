"""``GET /api/v1/me``: who the key is and what it may do.

Any valid key may ask (agents' included); the answer reads nothing but the key's own
record, already resolved by the authentication (``api.keycache``), so it costs no query.
A client checks a key with it (the console's sign-in) and hides or disables what the key
may not do; ``may`` comes from the table the guards themselves use
(``api.auth.PERMISSIONS``), so the two cannot disagree. It is a hint for a client, not a
rule: the API checks every request on its own.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get

from api.auth import permissions_of
from api.contract import problems
from api.schemas import Caller, Permissions
from infrastructure.keys import Principal


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["keys"]

    @get(responses=problems(), sync_to_thread=False)
    def me(self, request: Request[Principal, Any, Any]) -> Caller:
        """The calling key: its principal (the actor its commands record), roles, bound
        agent, key id, and what it may do."""
        principal: Principal = request.user
        return Caller(
            principal=principal.name,
            roles=sorted(principal.roles),
            agent_id=principal.agent_id,
            key_id=principal.key_id,
            may=Permissions(**permissions_of(principal)),
        )
