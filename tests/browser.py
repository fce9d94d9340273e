"""Shared by the browser tests: Debian's Chromium, the demo password, signing in. The `page`
and `shots` fixtures are in conftest.py."""

import re
import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "Demo-pass1!"


def sign_in(page, email):
    page.goto("/account/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def pick_existing_owner(dialog, query: str, email: str) -> None:
    """Step 3 of Site → Create Site: "Select an existing account", search, tick the match."""
    dialog.get_by_text("Select an existing account").click()
    dialog.locator("input[name=owner_q]").fill(query)
    dialog.locator(f"#owner-choices >> text={email}").wait_for()
    dialog.locator("#owner-choices input[type=radio]").first.check()
