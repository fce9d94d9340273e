"""Site → Alarm (guide §6.2.5): the site's alarms in the shared alarm list (alarms.lists), with
Select device among the site's inverters and times in the site's zone until the viewer picks
another; Download gives exactly the filtered rows."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import path
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext_lazy as _

from accounts.views.generic import ObjectListView
from alarms.lists import AlarmListMixin, valid_zone_name
from alarms.models import Alarm
from fleet.views.site_base import SiteTabView
from inverters.models import Inverter
from sites.models import Site


class AlarmTabView(AlarmListMixin, SiteTabView, ObjectListView):
    tab = "alarm"
    template_name = "fleet/sites/alarm.html"
    # The site is fixed: no Site screening or Site column; its devices are picked by name.
    hidden_alarm_filters = ("site", "sn")
    hidden_alarm_columns = ("site",)
    empty_text = _(
        "This site has no alarms. When one of its devices reports a fault, it shows here."
    )

    def get_object_queryset(self) -> QuerySet:
        # `model` is the list's (Alarm); the page's object is the site.
        return Site.objects.visible_to(self.request.user).select_related("company")

    def alarm_scope(self) -> QuerySet:
        return Alarm.objects.visible_to(self.request.user).filter(site=self.object)

    def alarm_devices(self) -> QuerySet:
        return (
            Inverter.objects.visible_to(self.request.user)
            .filter(site=self.object)
            .order_by("serial_number")
        )

    def alarm_default_time_zone(self) -> str:
        # The site's zone, as the guide's figure prints a site's times; the viewer's if the
        # tz database does not know it.
        return valid_zone_name(self.object.time_zone, self.request.user.time_zone)

    def get_export_filename(self) -> str:
        name = slugify(self.object.name) or str(self.object.pk)
        return f"alarms-{name}-{timezone.localdate():%Y%m%d}"


urlpatterns = [
    path("<int:pk>/alarm/", AlarmTabView.as_view(), name="alarm"),
]
