"""What every browser test checks on every page it visits."""

from __future__ import annotations

from pathlib import Path

WIDTHS = (360, 1280)


def check_and_shoot(page, shots: Path, name: str) -> None:
    """Screenshot the page at each width; at 360 px nothing may scroll
    sideways; no page script may have broken the content security policy."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 800})
        page.wait_for_timeout(50)  # layout settles
        if width == 360:
            overflow = page.evaluate(
                "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert overflow[0] <= overflow[1], f"{name}: scrolls sideways at 360 px ({overflow[0]} > {overflow[1]})"
        page.screenshot(path=shots / f"{name}-{width}.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def watch_console(page) -> list[str]:
    """Collect what the browser complains about (CSP violations, script errors)."""
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    return problems
