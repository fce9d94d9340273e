"""The shared layout in a real browser: an owner on a phone reaches every page of the menu
without sideways scrolling, and the menu button opens and closes the menu; every page names
itself in its <title> and has one h1 and a main landmark; at 1366×768 the operations log's wide
table scrolls inside its own box beside a menu column as tall as the page.

axe-core checks every page these tests visit (tests/conftest.py `page`)."""

import re
from pathlib import Path

import pytest
from django.urls import reverse

from tests import a11y
from tests.browser import CHROMIUM, sign_in
from tests.factories import GatewayFactory, RemoteOperationFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed"),
    pytest.mark.django_db(transaction=True),
]

PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}
MENU_BUTTON = "button[aria-controls=sidebar]"


def menu_urls(page) -> list[str]:
    """The main menu's links, read from the page whether or not the menu is open."""
    return page.eval_on_selector_all("#sidebar a.nav-link", "links => links.map(a => a.href)")


def assert_no_sideways_scroll(page):
    width, window = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, window.innerWidth]"
    )
    assert width <= window, f"{page.url} is {width} px wide in a {window} px window"


def assert_names_itself(page) -> str:
    """One h1, one main landmark and a <title> that names the page; returns the title."""
    title = page.title()
    assert re.fullmatch(r"\S.* · MatriCloud", title), f"{page.url} has the title {title!r}"
    assert page.locator("h1").count() == 1, f"{page.url} needs exactly one h1"
    assert page.locator("main").count() == 1, f"{page.url} needs one main landmark"
    return title


def own_pages() -> list[str]:
    """Pages everyone has besides the menu: User configuration behind the user menu."""
    return [
        reverse("accounts:profile"),
        reverse("accounts:security"),
        reverse("accounts:change_email"),
        reverse("accounts:change_password"),
        reverse("accounts:deregister"),
    ]


def test_an_owner_on_a_phone_reaches_every_menu_page_without_sideways_scrolling(page, tenants):
    page.set_viewport_size(PHONE)
    sign_in(page, tenants.owner.email)
    urls = menu_urls(page)
    # Home, Site, Gateway, Inverter, Maintenance; Upgrade is for staff only (firmware).
    assert len(urls) >= 5 and not any("/upgrade/" in url for url in urls)

    for url in [*urls, *own_pages()]:
        page.goto(url)
        assert_no_sideways_scroll(page)
        assert not page.is_visible("#sidebar"), "the menu hides behind its button on a phone"
        page.click("#user-menu")
        menu = page.locator("#user-menu + .dropdown-menu")
        menu.wait_for(state="visible")
        box = menu.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], page.url
        assert page.is_visible("text=User configuration")
        assert_no_sideways_scroll(page)
        page.keyboard.press("Escape")
        menu.wait_for(state="hidden")


def test_the_menu_button_opens_and_closes_the_menu_on_a_phone(page, tenants, shots):
    page.set_viewport_size(PHONE)
    sign_in(page, tenants.owner.email)
    page.screenshot(path=shots / "phone-home.png")
    button = page.locator(MENU_BUTTON)
    assert button.get_attribute("aria-expanded") == "false"
    assert not page.is_visible("#sidebar >> text=Inverter")

    button.click()
    page.wait_for_selector("#sidebar.show >> text=Inverter")
    assert button.get_attribute("aria-expanded") == "true"
    assert page.evaluate("document.getElementById('sidebar').contains(document.activeElement)")
    assert_no_sideways_scroll(page)
    a11y.check(page)  # the open menu, too
    page.wait_for_timeout(400)  # the menu's slide-in, for the screenshot
    page.screenshot(path=shots / "phone-menu.png")

    page.keyboard.press("Escape")
    page.wait_for_selector("#sidebar", state="hidden")
    assert button.get_attribute("aria-expanded") == "false"
    assert page.evaluate("document.activeElement.getAttribute('aria-controls')") == "sidebar"

    button.click()
    page.click("#sidebar >> text=Site")
    page.wait_for_url(re.compile(r"/site/$"))
    assert not page.is_visible("#sidebar >> text=Inverter")

    # From lg up the menu is a column beside the page, without the button.
    page.set_viewport_size(LAPTOP)
    assert page.is_visible("#sidebar >> text=Inverter")
    assert not button.is_visible()


@pytest.mark.parametrize("role", ["helios_admin", "sunfix_om", "owner"])
def test_every_page_names_itself(page, tenants, role):
    user = getattr(tenants, role)
    sign_in(page, user.email)
    urls = [*menu_urls(page), *own_pages()]
    if role != "owner":
        urls += [
            reverse("accounts:company_add"),
            reverse("accounts:company_detail", args=[tenants.sunfix.pk]),
            reverse("accounts:company_users", args=[tenants.sunfix.pk]),
            reverse("accounts:user_add", args=[tenants.sunfix.pk]),
            reverse("accounts:user_edit", args=[tenants.owner.pk]),
            reverse("maintenance:operations"),
            reverse("maintenance:parameters"),
        ]

    titles: dict[str, str] = {}
    for url in urls:
        page.goto(url)
        # A menu entry may lead on to the page of its first tab: count each page once.
        titles[page.url] = assert_names_itself(page)
    repeated = {title for title in titles.values() if list(titles.values()).count(title) > 1}
    assert not repeated, f"pages share a title: {repeated}"


def test_sign_in_registration_and_error_pages_name_themselves(page, tenants):
    urls = [
        reverse("accounts:login"),
        reverse("accounts:register"),
        reverse("accounts:register_form", args=["installer"]),
        reverse("accounts:forgot_password"),
        "/no-such-page/",
    ]
    titles = []
    for url in urls:
        page.goto(url)
        titles.append(assert_names_itself(page))
    # One step of registration may share its title with the next; sign-in and errors may not.
    assert len({titles[0], titles[1], titles[3], titles[4]}) == 4

    sign_in(page, tenants.owner.email)
    response = page.goto(reverse("accounts:company_list"))
    assert response.status == 403
    assert assert_names_itself(page) != titles[4]


def test_the_operations_log_fits_1366_and_its_table_scrolls_in_its_own_box(page, tenants):
    gateway = GatewayFactory(
        site__company=tenants.sunfix, site__name="Agriturismo Cascina Verde, Stalla nord"
    )
    # One page of rows: enough for a page taller than the window.
    RemoteOperationFactory.create_batch(
        20,
        gateway=gateway,
        user=tenants.sunfix_om,
        kind="write",
        summary="Write battery charge limit to 95 % and discharge limit to 10 %",
        error="The gateway did not answer before the deadline",
    )
    page.set_viewport_size(LAPTOP)
    sign_in(page, tenants.sunfix_om.email)
    page.goto(reverse("maintenance:operations"))
    page.wait_for_selector("#operation-table table")
    assert_no_sideways_scroll(page)

    table, box, scrolls = page.evaluate(
        """() => {
          const table = document.querySelector("#operation-table table");
          let box = table.parentElement;
          while (box && getComputedStyle(box).overflowX === "visible") box = box.parentElement;
          return [table.offsetWidth, box.clientWidth, box.tabIndex === 0];
        }"""
    )
    if table > box:
        # The box can be scrolled with the keyboard, and the first column stays in view.
        assert scrolls
        first = page.locator("#operation-table tbody tr:first-child > :first-child")
        before = first.bounding_box()["x"]
        page.evaluate(
            """() => {
              let box = document.querySelector("#operation-table table").parentElement;
              while (getComputedStyle(box).overflowX === "visible") box = box.parentElement;
              box.scrollLeft = box.scrollWidth;
            }"""
        )
        assert first.bounding_box()["x"] == pytest.approx(before, abs=1)
        assert_no_sideways_scroll(page)

    # The menu column is as tall as the page, and its links stay in view at the bottom.
    column, document = page.evaluate(
        "() => [document.querySelector('.sidebar-column').getBoundingClientRect().height,"
        " document.scrollingElement.scrollHeight]"
    )
    assert document > LAPTOP["height"] and column >= document - 1
    page.evaluate("window.scrollTo(0, document.scrollingElement.scrollHeight)")
    home = page.locator("#sidebar a.nav-link").first.bounding_box()
    assert 0 <= home["y"] < LAPTOP["height"]
