"""The staff console, served by feed at /console/: sign in with a staff
token, compose with live previews and each network's counter, approve,
publish or schedule, withdraw, the taxonomy, and each message's reach as
live charts (server-sent events), k-anonymous like the API. Pages call the
same use cases as the API (services/feed/usecases) after the same role
checks."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.feed.settings import FeedSettings
from services.feed.web import auth, dashboard, messages, taxonomy
from shared.web.pages import Site, install as install_site
from shared.web.session import Sessions, derive_key

HERE = Path(__file__).parent
PREFIX = "/console"
PUBLIC_PREFIXES = (f"{PREFIX}/",)  # these pages check the session themselves
NAV = (("/messages", "nav.messages"), ("/compose", "nav.compose"), ("/taxonomy", "nav.taxonomy"))


def install(app: FastAPI, settings: FeedSettings) -> None:
    # Sessions are signed with a key derived from the bootstrap token: every
    # replica has it, and rotating it signs every staff member out.
    key = derive_key(settings.staff_token.get_secret_value().encode(), "feed")
    sessions = Sessions(key, cookie="maillage_staff", path="/", secure=settings.cookie_secure,
                        max_age=settings.session_hours * 3600)
    install_site(app, Site.at(PREFIX, HERE, NAV), sessions,
                 [auth.router, messages.router, dashboard.router, taxonomy.router], HERE / "static",
                 end_sessions=auth.end_sessions)
