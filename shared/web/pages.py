"""Rendering a page of a thin client, and the routes every client has:
switch language, sign out, the redirect to sign in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.web.i18n import LANG_COOKIE, LANGUAGES, Catalog
from shared.web.session import CSRF_FIELD, Sessions, WebSession, csrf_protect, sessions_of

SHARED = Path(__file__).parent


class SignInRequired(Exception):
    """No session, an expired one, or one whose credential was revoked."""


@dataclass(frozen=True)
class Site:
    """One thin client: where it lives, its strings, templates and menu."""

    prefix: str  # "/app", "/console"
    catalog: Catalog
    templates: Jinja2Templates
    nav: Sequence[tuple[str, str]]  # (path under the prefix, label key)

    @classmethod
    def at(cls, prefix: str, folder: Path, nav: Sequence[tuple[str, str]]) -> Site:
        env = Environment(
            loader=ChoiceLoader([FileSystemLoader(folder / "templates"), FileSystemLoader(SHARED / "templates")]),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        return cls(prefix, Catalog(folder / "i18n"), Jinja2Templates(env=env), tuple(nav))


def site_of(request: Request) -> Site:
    return request.app.state.web_site


def render(request: Request, template: str, status_code: int = 200, session: WebSession | None = None,
           **context: object) -> HTMLResponse:
    """A page in the reader's language. A visitor without a session gets an
    anonymous one, so that even the sign-in form carries a CSRF token."""
    site, sessions = site_of(request), sessions_of(request)
    session = session or sessions.read(request)
    fresh = session is None
    session = session or Sessions.new()
    lang = site.catalog.language(request)
    response = site.templates.TemplateResponse(request, template, {
        "t": site.catalog.translator(lang), "lang": lang, "languages": LANGUAGES, "prefix": site.prefix,
        "nav": site.nav, "csrf": session.csrf, "csrf_field": CSRF_FIELD, "signed_in": session.sub is not None,
        "here": request.url.path, **context,
    }, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # pages hold a person's data: never cached
    if fresh:
        sessions.store(response, session)
    return response


def problems(exc: StarletteHTTPException | ValidationError) -> list[str]:
    """An API refusal as sentences naming the field: "emails: not an address"."""
    if isinstance(exc, ValidationError):
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_input=False)]
    if isinstance(exc.detail, list):
        return [f"{'.'.join(map(str, d.get('loc', [])[1:]))}: {d.get('msg')}" for d in exc.detail]
    return [str(exc.detail)]


def local_path(target: str, prefix: str) -> str:
    """Where to go back to after a form: only a path of this client (no
    open redirect to another site)."""
    ok = target.startswith(f"{prefix}/") and not target.startswith("//") and "\\" not in target
    return target if ok else f"{prefix}/"


def common_router(prefix: str, sign_in_path: str) -> APIRouter:
    router = APIRouter(prefix=prefix, include_in_schema=False, dependencies=[Depends(csrf_protect)])

    @router.post("/lang")
    async def switch_language(request: Request, lang: str = Form(...), next: str = Form(default="")):
        if lang not in LANGUAGES:
            raise HTTPException(422, detail=f"lang: one of {', '.join(LANGUAGES)}")
        response = RedirectResponse(local_path(next, prefix), status_code=303)
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", httponly=True, samesite="strict",
                            secure=sessions_of(request).secure)
        return response

    @router.post("/sign-out")
    async def sign_out(request: Request):
        """Ends every session of the account, not just this browser's
        cookie: a copy of the cookie (another device, a captured one) must
        not outlive the sign-out. The service's ``end_sessions`` checks the
        session is current before it bumps the account's epoch, so a stale
        cookie cannot sign anyone out."""
        session = sessions_of(request).read(request)
        if session is not None and session.sub is not None:
            await request.app.state.web_end_sessions(request, session)
        response = RedirectResponse(f"{prefix}{sign_in_path}", status_code=303)
        sessions_of(request).clear(response)
        return response

    return router


EndSessions = Callable[[Request, WebSession], Awaitable[None]]


def install(app: FastAPI, site: Site, sessions: Sessions, routers: Sequence[APIRouter], static: Path,
            end_sessions: EndSessions, sign_in_path: str = "/sign-in") -> None:
    """Mount a thin client on a service's app. Its routes stay out of the
    OpenAPI document: they are pages, not the API. ``end_sessions``: what
    sign-out does to the account (bump its session epoch in the database)."""
    app.state.web_site, app.state.web_sessions, app.state.web_end_sessions = site, sessions, end_sessions
    for router in (common_router(site.prefix, sign_in_path), *routers):
        app.include_router(router, include_in_schema=False)
    app.mount(f"{site.prefix}/static", StaticFiles(directory=static), name=f"{site.prefix}-static")
    app.mount(f"{site.prefix}/assets", StaticFiles(directory=SHARED / "static"), name=f"{site.prefix}-assets")

    async def to_sign_in(request: Request, _exc: Exception):
        return RedirectResponse(f"{site.prefix}{sign_in_path}", status_code=303)

    async def as_page(request: Request, exc: StarletteHTTPException):
        """A refusal inside the client is a page naming what is wrong (the
        API keeps its JSON)."""
        if not request.url.path.startswith(f"{site.prefix}/"):
            return await http_exception_handler(request, exc)
        return render(request, "error.html", exc.status_code, reasons=problems(exc))

    app.add_exception_handler(SignInRequired, to_sign_in)
    # Starlette types every handler as taking any Exception; this one is only
    # ever called with the class it is registered for
    app.add_exception_handler(StarletteHTTPException, as_page)  # type: ignore[arg-type]
