"""Inverter → the inverter list (guide §6.4, §6.4.1): status, model and keyword search, the
guide's columns with the chooser and downloads, and each row's Rename and Delete.

A page is two queries whatever the fleet's size, as on the site list: the page's ids with the
total (a window count) over the filtered, sorted inverters, then those rows with their site,
gateway, company and newest values in one join. Owners see the inverters of the sites granted
to them, without the row menu; its URLs answer 403 for them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from accounts.views.generic import ObjectConfirmView, ObjectListView, ObjectMixin
from fleet import services
from fleet.inverter_filters import InverterFilter
from fleet.inverter_tables import InverterTable
from inverters.models import Inverter
from ui.dialogs import back_to, dialog_done, is_dialog_request, render_dialog
from ui.forms import StyledFormMixin
from ui.lists import PageByIdsMixin

ROW_RELATIONS = ("site", "gateway", "company", "latest")


def _list_url(request: HttpRequest) -> str:
    """Back to the list (with its filters) or the page the dialog was opened from."""
    return back_to(request, reverse("inverters:list"))


class InverterListView(PageByIdsMixin, ObjectListView):
    """The inverters the user may see (guide figure 6-44)."""

    action = "device.view"
    model = Inverter
    table_class = InverterTable
    filterset_class = InverterFilter
    template_name = "fleet/inverters/list.html"
    htmx_target = "inverter-table"
    paginate_by = 20
    export_filename = "inverters"
    empty_icon = "lightning-charge"
    empty_text = gettext_lazy(
        "No inverters yet. Inverters appear here once a gateway of your sites reports them."
    )
    empty_filtered_text = gettext_lazy("No inverter matches these filters.")
    reset_label = gettext_lazy("Show all inverters")

    def get_queryset(self) -> QuerySet:
        # The list's own order and joins come later (sort, then the page's rows); the model's
        # default order would make every count sort.
        return super().get_queryset().order_by()

    def get_table(self, paginate: bool = True) -> InverterTable:
        table = super().get_table(paginate=paginate)
        if not paginate:  # a download: every row, with its relations in the same query
            table.data.data = table.data.data.select_related(*ROW_RELATIONS)
        return table

    def page_rows(self, ids: list[int], ordered: QuerySet) -> QuerySet:
        """The page's rows with their site, gateway, company and newest values."""
        return (
            Inverter.objects.filter(pk__in=ids)
            .select_related(*ROW_RELATIONS)
            .order_by(*ordered.query.order_by)
        )

    def get_export_title(self) -> str:
        return _("Inverters")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(next_url=self.request.get_full_path(), **kwargs)


# --- Row actions (guide §6.4.1, figure 6-46) ------------------------------------------------------


class InverterRenameForm(StyledFormMixin, forms.Form):
    name = forms.CharField(
        label=gettext_lazy("Name"),
        max_length=Inverter._meta.get_field("name").max_length,
        required=False,
        help_text=gettext_lazy("Leave it empty to show the device SN instead."),
    )


class InverterActionMixin(ObjectMixin):
    """A dialog on one inverter of the list: the inverter within scope (404), `device.manage`
    (403)."""

    model = Inverter
    action = "device.manage"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("gateway", "site")


class InverterRenameView(InverterActionMixin, TemplateView):
    """Rename: a one-field form in the dialog; the change is audited (inverter.renamed)."""

    template_name = "fleet/inverters/rename.html"

    def show(self, form: forms.Form) -> HttpResponse:
        context = self.get_context_data(
            inverter=self.object,
            form=form,
            in_modal=is_dialog_request(self.request),
            next_url=_list_url(self.request),
        )
        return render_dialog(self.request, self.template_name, context)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.show(InverterRenameForm(initial={"name": self.object.name}))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = InverterRenameForm(request.POST)
        if form.is_valid():
            inverter: Inverter = self.object
            old = str(inverter)
            try:
                services.rename_inverter(
                    inverter, form.cleaned_data["name"], acting_user=request.user
                )
            except ValidationError as error:
                form.add_error("name" if hasattr(error, "error_dict") else None, error)
            else:
                messages.success(
                    request,
                    _("Inverter “%(old)s” has been renamed to “%(new)s”.")
                    % {"old": old, "new": str(inverter)},
                )
                return dialog_done(request, _list_url(request))
        return self.show(form)


class InverterDeleteView(InverterActionMixin, ObjectConfirmView):
    """Delete: a confirmation naming the inverter and its gateway; audited (inverter.deleted)."""

    template_name = "fleet/inverters/delete.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        next_url = _list_url(self.request)
        return super().get_context_data(
            inverter=self.object,
            next_url=next_url,
            next_url_quoted=quote(next_url, safe=""),
            **kwargs,
        )

    def perform(self, obj: Inverter) -> None:
        services.delete_inverter(None, obj, acting_user=self.request.user)

    def get_success_message(self) -> str:
        return _("Inverter %(sn)s has been deleted.") % {"sn": self.object.serial_number}

    def get_success_url(self) -> str:
        return _list_url(self.request)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
            return HttpResponseRedirect(_list_url(request))


urlpatterns = [
    path("", InverterListView.as_view(), name="list"),
    path("<int:pk>/rename/", InverterRenameView.as_view(), name="rename"),
    path("<int:pk>/delete/", InverterDeleteView.as_view(), name="delete"),
]
