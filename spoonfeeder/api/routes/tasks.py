"""/api/tasks — to be written."""

from __future__ import annotations

from fastapi import APIRouter

from spoonfeeder.context import AppContext


def routes(ctx: AppContext) -> APIRouter:
    return APIRouter(tags=["tasks"])
