"""The seed's response envelope: `{"success": true, "data": …}`, lists with
`pagination`, failures with `error` and `code`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")

DEFAULT_LIMIT = 20
MAX_LIMIT = 200


class Ok(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: T


class Pagination(BaseModel):
    page: int = Field(description="1-based page number")
    limit: int = Field(description="items per page")
    total: int = Field(description="items matching, on every page")
    pages: int = Field(description="number of pages (at least 1)")

    @classmethod
    def of(cls, page: int, limit: int, total: int) -> Pagination:
        return cls(page=page, limit=limit, total=total, pages=max(1, math.ceil(total / limit)))


class Paged(BaseModel, Generic[T]):
    success: Literal[True] = True
    data: list[T]
    pagination: Pagination


class Failure(BaseModel):
    success: Literal[False] = False
    error: str = Field(description="what went wrong, written for the person reading it")
    code: str = Field(description="a stable code per kind of error, e.g. NOT_FOUND")


def ok(data: T) -> Ok[T]:
    return Ok[T](data=data)


def paged(items: Sequence[T], page: int, limit: int, total: int) -> Paged[T]:
    return Paged[T](data=list(items), pagination=Pagination.of(page, limit, total))


def page_slice(items: Sequence[T], page: int, limit: int) -> Paged[T]:
    """A page of a list the service returned whole (small lists: profiles, sessions)."""
    start = (page - 1) * limit
    return paged(items[start : start + limit], page, limit, len(items))
