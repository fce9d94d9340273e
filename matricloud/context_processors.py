"""Template context shared by every page: the main menu of the guide."""

from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

MAIN_MENU = [
    ("home", _("Home"), "house", "home"),
    ("account", _("Account"), "building", "accounts:company_list"),
    ("site", _("Site"), "geo-alt", "sites:list"),
    ("gateway", _("Gateway"), "router", "gateways:list"),
    ("inverter", _("Inverter"), "lightning-charge", "inverters:list"),
    ("upgrade", _("Upgrade"), "cloud-arrow-up", "upgrades:index"),
    ("maintenance", _("Maintenance"), "tools", "placeholder:maintenance"),
]


def navigation(request: HttpRequest) -> dict:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    from accounts.permissions import can

    # The Upgrade pages (guide §7): the firmware catalogue and the upgrade tasks.
    upgrade_access = {
        "releases": can(request.user, "firmware.view"),
        "tasks": can(request.user, "upgrade.manage"),
    }
    items = []
    for key, label, icon, url_name in MAIN_MENU:
        if key == "account" and not can(request.user, "company.view"):
            continue
        if key == "upgrade" and not any(upgrade_access.values()):
            continue
        items.append({"key": key, "label": label, "icon": icon, "url": reverse(url_name)})
    section = getattr(getattr(request, "resolver_match", None), "namespace", "") or ""
    return {
        "main_menu": items,
        "menu_section": _section_for(request.path, section),
        "upgrade_access": upgrade_access,
    }


def _section_for(path: str, namespace: str) -> str:
    if (
        namespace == "accounts"
        and path.startswith("/account/")
        and not path.startswith("/account/me/")
    ):
        return "account"
    for key in ("site", "gateway", "inverter", "upgrade", "maintenance"):
        if path.startswith(f"/{key}"):
            return key
    return "home" if path == "/" else ""
