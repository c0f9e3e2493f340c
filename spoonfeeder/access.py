"""Who is acting, and the one rule of ownership every service applies.

A row a user creates is theirs (`owner_id`); a user sees and changes only their own
rows, an admin everyone's (and may narrow a list to one user's). With sign-in off
there is one shared space, as before users existed: `EVERYONE` acts, sees every row
and owns what it creates as nobody (NULL).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from spoonfeeder.errors import Forbidden


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    name: str | None = None
    admin: bool = False

    @property
    def owner_id(self) -> uuid.UUID | None:
        """The owner of what this actor creates."""
        return self.user_id

    @property
    def sees_all(self) -> bool:
        return self.admin or self.user_id is None

    def sees(self, owner_id: uuid.UUID | None) -> bool:
        return self.sees_all or owner_id == self.user_id

    def check(self, owner_id: uuid.UUID | None, what: str) -> None:
        """Refuse (403) a row of someone else's; `what` names it: "conversation"."""
        if not self.sees(owner_id):
            raise Forbidden(f"This {what} belongs to another user.")

    def scope(self, column: Any, owner_id: uuid.UUID | None = None) -> Any | None:
        """The WHERE clause that keeps a list to what this actor sees (None: all
        rows); an admin's `owner_id` narrows it to that user's rows."""
        if not self.sees_all:
            return column == self.user_id
        if owner_id is not None:
            return column == owner_id
        return None


EVERYONE = Actor(None, None, admin=True)


def scoped(query: Any, actor: Actor, column: Any, owner_id: uuid.UUID | None = None) -> Any:
    """`query` narrowed to the rows `actor` sees (and an admin's chosen owner)."""
    clause = actor.scope(column, owner_id)
    return query if clause is None else query.where(clause)
