"""A relay's rules, together: ``emails`` (one job per confirmed contact,
under the campaign-wide rules), ``posts`` (one post per connected account,
share links for the rest, from ``share_links``) and ``auto`` (which
suggestions relay without a click). The one use case that runs them, for
the click, the web page and auto-relay alike, is ``usecases/relay.py``."""
