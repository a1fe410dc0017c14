"""Prefilled share links for the networks whose personal-profile APIs are
closed or paid: the client opens them, the volunteer confirms. Pure."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from shared.postlength import short_post

SHARE_NETWORKS = ("facebook", "x", "whatsapp", "linkedin", "telegram")


def share_links(text: str, link: str | None) -> dict[str, str]:
    """One URL per network, the message's short variant and link encoded in
    it. Facebook and LinkedIn take only a link (they read its page): without
    a link there is nothing to share there."""
    post = short_post(text, link)
    links = {
        "x": "https://x.com/intent/post?" + urlencode({"text": post}, quote_via=quote),
        "whatsapp": "https://wa.me/?" + urlencode({"text": post}, quote_via=quote),
        "telegram": "https://t.me/share/url?" + urlencode(
            {"url": link or "", "text": text.strip()} if link else {"url": post}, quote_via=quote),
    }
    if link:
        links["facebook"] = "https://www.facebook.com/sharer/sharer.php?" + urlencode({"u": link}, quote_via=quote)
        links["linkedin"] = "https://www.linkedin.com/sharing/share-offsite/?" + urlencode({"url": link}, quote_via=quote)
    return {name: links[name] for name in SHARE_NETWORKS if name in links}
