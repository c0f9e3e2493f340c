"""The seed's response envelope: `{"success": true, "data": …}`, lists with
`pagination`, failures with `error` and `code`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
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


def page_slice(items: Sequence[T], pages: PageQuery) -> Paged[T]:
    """A page of a list the service returned whole (small lists: profiles, sessions)."""
    chosen = items[pages.offset : pages.offset + pages.limit]
    return paged(chosen, pages.page, pages.limit, len(items))


@dataclass(frozen=True)
class PageQuery:
    """`?page=&limit=` of a list route (page 1-based)."""

    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def page_query(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page")] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = DEFAULT_LIMIT,
) -> PageQuery:
    """Use as `pages: Annotated[PageQuery, Depends(page_query)]`."""
    return PageQuery(page, limit)
