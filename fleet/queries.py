"""What a site is right now, in SQL: its status (guide §4.1) and its live figures.

A site's status is the column `Site.status`, which PostgreSQL keeps by the rule below
(`status_expression`; triggers of fleet migration 0003 recompute a site whenever one of its
devices changes status or site), so every page (Home, the site list, the site header) shows the
same status, and a list filtered or counted by status over 10,000 sites reads one column. The
live figures are annotations: correlated subqueries on indexed columns, so a page of 20 sites
computes 20 rows.

Status, as §4.1 defines it:

- **abnormal**: at least one inverter of the site is in fault;
- **online**: at least one device answers (an inverter running or in standby, or a gateway
  online) and none is in fault;
- **offline**: every device is offline or has never been heard from — and a site without
  devices, which has nothing that could be online.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.db.models import (
    Case,
    Exists,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from gateways.models import Gateway, GatewayStatus
from inverters.models import Inverter, InverterLatest, InverterStatus, SiteEnergyDaily
from sites.models import Site


class SiteStatus(models.TextChoices):
    ONLINE = "online", _("Online")
    OFFLINE = "offline", _("Offline")
    ABNORMAL = "abnormal", _("Abnormal")


#: The pill colour of each status (DESIGN §5: a word in a coloured pill, never colour alone).
STATUS_TONE = {
    SiteStatus.ONLINE: "success",
    SiteStatus.OFFLINE: "secondary",
    SiteStatus.ABNORMAL: "danger",
}
#: The same for devices: online/running green, standby blue-grey, fault red, offline and
#: unknown grey.
GATEWAY_TONE = {
    GatewayStatus.ONLINE: "success",
    GatewayStatus.OFFLINE: "secondary",
    GatewayStatus.UNKNOWN: "secondary",
}
INVERTER_TONE = {
    InverterStatus.RUNNING: "success",
    InverterStatus.STANDBY: "info",
    InverterStatus.FAULT: "danger",
    InverterStatus.OFFLINE: "secondary",
    InverterStatus.UNKNOWN: "secondary",
}

ANSWERING = (InverterStatus.RUNNING, InverterStatus.STANDBY)


def _inverters_of_site() -> QuerySet:
    return Inverter.objects.filter(site=OuterRef("pk"))


def status_expression() -> Case:
    """The §4.1 status of the site in the outer query, as a CASE over two EXISTS — the rule
    the database applies to `Site.status` (fleet migration 0003, `fleet_site_status`)."""
    faulty = Exists(_inverters_of_site().filter(status=InverterStatus.FAULT))
    answering = Exists(_inverters_of_site().filter(status__in=ANSWERING)) | Exists(
        Gateway.objects.filter(site=OuterRef("pk"), status=GatewayStatus.ONLINE)
    )
    return Case(
        When(faulty, then=Value(SiteStatus.ABNORMAL.value)),
        When(answering, then=Value(SiteStatus.ONLINE.value)),
        default=Value(SiteStatus.OFFLINE.value),
        output_field=models.CharField(),
    )


def reconcile_site_statuses() -> int:
    """Set `Site.status` again from the devices wherever it differs; how many sites changed.

    The database keeps the column itself (triggers, fleet migration 0003); two transactions
    that change devices of the same site at the same moment could each see only their own
    change, so the periodic Home task runs this to put such a site right within seconds. It
    reads the whole fleet in one statement and writes only what differs.
    """
    differing = (
        Site.objects.annotate(computed=status_expression())
        .exclude(status=F("computed"))
        .values("pk")
    )
    return Site.objects.filter(pk__in=differing).update(status=status_expression())


def status_counts(sites: QuerySet) -> dict[str, int]:
    """How many of `sites` are online, offline and abnormal (one query), plus `total`."""
    rows = (
        sites.order_by().values("status").annotate(n=models.Count("pk")).values_list("status", "n")
    )
    counts = {status.value: 0 for status in SiteStatus}
    counts.update(dict(rows))
    counts["total"] = sum(counts[s.value] for s in SiteStatus)
    return counts


def _sum_over_site(queryset: QuerySet, column: str) -> Subquery:
    summed = (
        queryset.filter(site=OuterRef("pk"))
        .order_by()
        .values("site")
        .annotate(total=Sum(column))
        .values("total")
    )
    return Subquery(summed, output_field=FloatField())


def _count_over_site(inverters: QuerySet) -> Coalesce:
    """How many of `inverters` (already limited to the outer site) there are; 0 for none."""
    counted = inverters.order_by().values("site").annotate(n=models.Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def with_figures(sites: QuerySet, today: dt.date | None = None) -> QuerySet:
    """Annotate the live figures of the site list and header.

    - `power_w`: PV power now, the sum of each inverter's newest upload (None without data);
    - `day_kwh`: PV yield of the site's local `today` (None before the first sample of the day;
      the caller passes the day in the site's time zone, or the user's for a mixed list);
    - `inverter_count`, `answering_count`: for the online rate.
    """
    today = today or timezone.localdate()
    return sites.annotate(
        power_w=_sum_over_site(InverterLatest.objects.all(), "pv_power"),
        day_kwh=Subquery(
            SiteEnergyDaily.objects.filter(site=OuterRef("pk"), day=today).values("pv_kwh")[:1],
            output_field=FloatField(),
        ),
        inverter_count=_count_over_site(_inverters_of_site()),
        answering_count=_count_over_site(_inverters_of_site().filter(status__in=ANSWERING)),
    )


def online_rate(site: models.Model) -> float | None:
    """Share of a site's inverters that answer, 0–100 (None for a site without inverters);
    needs `with_figures`."""
    if not getattr(site, "inverter_count", 0):
        return None
    return 100.0 * site.answering_count / site.inverter_count


__all__ = [
    "ANSWERING",
    "GATEWAY_TONE",
    "INVERTER_TONE",
    "STATUS_TONE",
    "SiteStatus",
    "online_rate",
    "status_counts",
    "reconcile_site_statuses",
    "status_expression",
    "with_figures",
]
