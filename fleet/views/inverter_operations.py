"""Inverter → Operations: this inverter's own operations log (who, when, what, old → new,
result) — Maintenance → Operations log (maintenance/views.py, tables.py, filters.py) narrowed to
the inverter, without the columns and filters every row shares (Device SN, Site, Gateway).
Pending rows refresh themselves until the gateway has answered; Download gives exactly the
filtered rows."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from django.utils.text import slugify

from fleet.views.inverter_base import InverterTabView
from inverters.models import Inverter
from maintenance.filters import OperationFilter
from maintenance.models import RemoteOperation
from maintenance.tables import OperationTable
from maintenance.views import OperationListView

SHARED_COLUMNS = ("device_serial", "site", "gateway")
SHARED_FILTERS = ("site", "sn")


class OperationsTabView(InverterTabView, OperationListView):
    tab = "operations"
    action = ""  # the tab's: device.operate
    model = RemoteOperation  # the list's; the page's object is the inverter
    template_name = "fleet/inverters/operations.html"
    compact_actions = True  # Download sits in the card header

    def get_object_queryset(self) -> QuerySet:
        return Inverter.objects.visible_to(self.request.user).select_related(
            "site", "gateway", "company"
        )

    def get_queryset(self) -> QuerySet:
        return (
            RemoteOperation.objects.visible_to(self.request.user)
            .filter(inverter=self.object)
            .select_related("site", "gateway", "user")
        )

    def get_filterset(self) -> OperationFilter:
        if self._filterset is None:
            self._filterset = self.filterset_class(
                self.request.GET or None,
                queryset=self.get_queryset(),
                request=self.request,
                hidden=SHARED_FILTERS,
            )
        return self._filterset

    def get_table(self, paginate: bool = True) -> OperationTable:
        table = super().get_table(paginate=paginate)
        table.hide(SHARED_COLUMNS)
        return table

    def get_export_filename(self) -> str:
        name = slugify(self.object.serial_number) or str(self.object.pk)
        return f"operations-{name}-{timezone.localdate():%Y%m%d}"


urlpatterns = [
    path("<int:pk>/operations/", OperationsTabView.as_view(), name="operations"),
]
