"""A message's reach, live: server-sent events carrying the same
k-anonymous report as GET /messages/{id}/reach, sent when it changes, which
is only when k more volunteers moved a figure (domain.staff_report): polling
it every few seconds shows nothing a single relay did."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from services.feed.api.deps import EngineDep, SettingsDep
from services.feed.domain import Actor
from services.feed.usecases.read_messages import read_figures, stored_message
from services.feed.web.auth import web_actor

router = APIRouter(prefix="/console", include_in_schema=False)
EVERY_SECONDS = 2.0
HEARTBEAT_SECONDS = 15.0
# A stream ends after this long; EventSource reconnects by itself, and the
# session is checked again on the new request (a revoked account stops).
STREAM_SECONDS = 600.0


def event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@router.get("/messages/{message_id}/reach/events")
async def reach_events(message_id: str, request: Request, engine: EngineDep, settings: SettingsDep,
                       _actor: Actor = Depends(web_actor)):
    await stored_message(engine, message_id)  # 404 before the stream starts

    async def stream():
        last, quiet_since, ends = None, time.monotonic(), time.monotonic() + STREAM_SECONDS
        while time.monotonic() < ends and not await request.is_disconnected():
            reach = (await read_figures(engine, settings, message_id)).reach.model_dump(mode="json")
            if reach != last:
                last, quiet_since = reach, time.monotonic()
                yield event("reach", {"at": time.time(), "reach": reach})
            elif time.monotonic() - quiet_since > HEARTBEAT_SECONDS:
                quiet_since = time.monotonic()
                yield ": still here\n\n"  # keeps proxies from closing an idle stream
            await asyncio.sleep(EVERY_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
