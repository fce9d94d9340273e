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
