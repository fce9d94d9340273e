"""Gateway (guide §6.3, §6.3.1): the dashboard of status, model and firmware-version counts
above the gateway list, its filters, columns and downloads, and each row's Distribute and
Rename."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from accounts.permissions import can
from accounts.views.generic import ObjectListView, ObjectMixin
from fleet import gateway_services
from fleet.gateway_filters import GatewayFilter
from fleet.gateway_forms import (
    GatewayDistributeForm,
    GatewayRenameForm,
    SiteSearchForm,
    distributable_sites,
)
from fleet.gateway_tables import GatewayTable, annotate_gateway_rows, gateway_dashboard
from gateways.models import Gateway
from ui.dialogs import back_to, dialog_done, render_dialog
from ui.query import positive_int

SITES_PER_PAGE = 8


def back_url(request: HttpRequest) -> str:
    """Back to the list (with its filters) or the page the dialog was opened from."""
    return back_to(request, reverse("gateways:list"))


# --- The list ------------------------------------------------------------------------------------


class GatewayListView(ObjectListView):
    action = "device.view"
    model = Gateway
    table_class = GatewayTable
    filterset_class = GatewayFilter
    template_name = "fleet/gateways/list.html"
    htmx_target = "gateway-table"
    paginate_by = 20
    export_filename = "gateways"
    empty_icon = "router"
    empty_text = gettext_lazy(
        "No gateways yet. A gateway appears here once it is bound to one of your sites."
    )
    empty_filtered_text = gettext_lazy("No gateway matches these filters.")
    reset_label = gettext_lazy("Show all gateways")

    def get_queryset(self) -> QuerySet:
        return annotate_gateway_rows(super().get_queryset().select_related("site", "company"))

    def get_table(self, paginate: bool = True) -> GatewayTable:
        table = super().get_table(paginate)
        table.can_manage = can(self.request.user, "device.manage")
        if not table.can_manage:  # owners: nothing to offer, so no Operation column
            table.columns.hide("operations")
        return table

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        if not context.get("is_partial"):
            context["dashboard"] = gateway_dashboard(self.request.user, self.request.path)
        context["next_url"] = self.request.get_full_path()
        return context


# --- Row actions ---------------------------------------------------------------------------------


class GatewayActionMixin(ObjectMixin):
    """A dialog on one gateway: the gateway within scope (404), `device.manage` (403)."""

    model = Gateway
    action = "device.manage"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("site", "company")

    def show(self, **context: Any) -> HttpResponse:
        context.setdefault("gateway", self.object)
        context.setdefault("next_url", back_url(self.request))
        return render_dialog(self.request, self.template_name, context)


class GatewayRenameView(GatewayActionMixin, TemplateView):
    template_name = "fleet/gateways/rename.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.show(form=GatewayRenameForm(initial={"name": self.object.name}))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = GatewayRenameForm(request.POST)
        if form.is_valid():
            try:
                gateway_services.rename_gateway(
                    self.object, form.cleaned_data["name"], acting_user=request.user
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(
                    request,
                    _("Gateway %(sn)s is now called “%(name)s”.")
                    % {"sn": self.object.serial_number, "name": str(self.object)},
                )
                return dialog_done(request, back_url(request))
        return self.show(form=form)


class GatewayDistributeView(GatewayActionMixin, TemplateView):
    """Distribute (figure 6-33): search the sites in scope, pick one, Confirm."""

    template_name = "fleet/gateways/distribute.html"

    def site_choices(self, selected: str = "") -> dict[str, Any]:
        search = SiteSearchForm(self.request.GET or None)
        query = search.cleaned_data["site_q"] if search.is_valid() else ""
        page = Paginator(distributable_sites(self.request.user, query), SITES_PER_PAGE).get_page(
            positive_int(self.request.GET.get("site_page"), 1)
        )
        return {
            "site_page": page,
            "site_q": query,
            "selected_site": selected,
            "sites_url": reverse("gateways:distribute", args=[self.object.pk]),
            "site_page_url": "{}?{}&site_page=".format(
                reverse("gateways:distribute", args=[self.object.pk]),
                urlencode({"part": "sites", "site_q": query}),
            ),
        }

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.GET.get("part") == "sites":
            context = {"gateway": self.object, **self.site_choices(request.GET.get("site", ""))}
            return render(request, "fleet/gateways/_site_choices.html", context)
        return self.show(
            form=GatewayDistributeForm(acting_user=request.user), **self.site_choices()
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = GatewayDistributeForm(request.POST, acting_user=request.user)
        if form.is_valid():
            site = form.cleaned_data["site"]
            try:
                gateway_services.distribute_gateway(self.object, site, acting_user=request.user)
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(
                    request,
                    _("Gateway %(sn)s has been distributed to the site “%(site)s”.")
                    % {"sn": self.object.serial_number, "site": site.name},
                )
                return dialog_done(request, back_url(request))
        selected = str(form["site"].value() or "")
        return self.show(form=form, **self.site_choices(selected))


urlpatterns = [
    path("", GatewayListView.as_view(), name="list"),
    path("<int:pk>/rename/", GatewayRenameView.as_view(), name="rename"),
    path("<int:pk>/distribute/", GatewayDistributeView.as_view(), name="distribute"),
]
