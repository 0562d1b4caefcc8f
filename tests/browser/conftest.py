"""Browser fixtures: headless Chromium (Debian's package) driven by Playwright, and screenshots."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are plain synchronous ones, which Django would otherwise refuse next to a loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def shots(tmp_path: Path) -> Callable[..., None]:
    """Saves a full-page screenshot to OPSDASH_SCREENSHOT_DIR (the docs), else a temp folder;
    ``element=`` (a locator) takes just that part of the page."""
    folder = Path(os.environ.get("OPSDASH_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str, *, element: Any = None) -> None:
        # "load", not "networkidle": pages that poll (test state, dashboard panel) never idle.
        page.wait_for_load_state("load")
        path = str(folder / f"{name}.png")
        if element is not None:
            element.screenshot(path=path)
            return
        # The window as tall as the page, so sticky bars (the form's Save row, the sidebar)
        # sit where they belong instead of across the middle of a stitched picture.
        size = page.viewport_size
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], height)})
        page.screenshot(path=path, full_page=True)
        page.set_viewport_size(size)

    return shot


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """Opens pages in fresh contexts (own cookies); pass viewport=/is_mobile= for a phone."""
    contexts: list[Any] = []

    def open_page(**context_options: Any) -> Any:
        context_options.setdefault("viewport", {"width": 1400, "height": 900})
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: Callable[..., Any]) -> Any:
    """One desktop-sized page."""
    return new_page()
