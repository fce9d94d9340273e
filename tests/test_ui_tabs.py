"""Tabs of a detail page (ui/tabs.py): a tab the role may not use is not shown and its URL
answers 403; a click swaps only the panel; a polling panel refreshes only itself."""

import pytest
from django.core.exceptions import PermissionDenied
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.views.generic import TemplateView
from django_htmx.middleware import HtmxDetails

from accounts.models import Company
from accounts.views.generic import ObjectMixin, Tab, TabMixin

pytestmark = pytest.mark.django_db

TABS = (
    Tab("info", "Company information", "accounts:company_detail", "company.view"),
    Tab("users", "User management", "accounts:company_users", "user.view", poll="10s"),
    Tab("delete", "Delete", "accounts:company_delete", "company.delete", icon="trash"),
)


class CompanyTabView(TabMixin, ObjectMixin, TemplateView):
    model = Company
    tabs = TABS
    template_name = "company/page.html"


def request_for(user, headers=None):
    request = RequestFactory().get("/", headers=headers or {})
    request.user = user
    request.htmx = HtmxDetails(request)
    return request


def view_for(tab, user, company, headers=None):
    view = CompanyTabView(tab=tab)
    view.setup(request_for(user, headers), pk=company.pk)
    view.object = view.get_object()
    return view


def test_only_the_tabs_the_role_may_use_are_shown(tenants):
    admin = view_for("info", tenants.helios_admin, tenants.sunfix)
    assert [item["tab"].name for item in admin.visible_tabs()] == ["info", "users", "delete"]
    om = view_for("info", tenants.helios_om, tenants.sunfix)
    assert [item["tab"].name for item in om.visible_tabs()] == ["info", "users"]
    html = render_to_string("ui/_tabs.html", om.get_context_data())
    assert "Delete" not in html
    assert f'href="/account/companies/{tenants.sunfix.pk}/"' in html
    assert 'aria-current="page"' in html and 'hx-target="#tab-panel"' in html


def test_the_url_of_a_tab_the_role_may_not_use_answers_403(tenants):
    view = CompanyTabView.as_view(tab="delete")
    with pytest.raises(PermissionDenied):
        view(request_for(tenants.helios_om), pk=tenants.sunfix.pk)
    response = view(request_for(tenants.helios_admin), pk=tenants.sunfix.pk)
    assert response.status_code == 200
    assert response.template_name == ["company/page.html"]


def test_a_click_on_a_tab_renders_the_panel_and_the_tab_bar(tenants):
    clicked = {"HX-Request": "true", "HX-Target": "tab-panel", "HX-Trigger": "users-tab"}
    view = view_for("users", tenants.helios_admin, tenants.sunfix, clicked)
    assert view.get_template_names() == ["company/page.html#tab"]
    assert view.get_context_data()["tab_switched"] is True


def test_a_polling_tab_refreshes_only_its_panel(tenants):
    polled = {"HX-Request": "true", "HX-Target": "tab-panel", "HX-Trigger": "tab-panel"}
    view = view_for("users", tenants.helios_admin, tenants.sunfix, polled)
    context = view.get_context_data()
    assert view.get_template_names() == ["company/page.html#tab"]
    assert context["tab_switched"] is False
    attributes = render_to_string("ui/_tab_poll.html", context)
    users = f"/account/companies/{tenants.sunfix.pk}/users/"
    assert f'hx-get="{users}" hx-trigger="every 10s"' in attributes


def test_a_whole_page_without_htmx(tenants):
    view = view_for("info", tenants.helios_admin, tenants.sunfix)
    assert view.get_template_names() == ["company/page.html"]
    assert render_to_string("ui/_tab_poll.html", view.get_context_data()).strip() == ""
