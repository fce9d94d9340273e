"""What a site is right now, in SQL: its status (guide §4.1) and its live figures.

Every page that shows a site's status or power (Home, the site list, the site header) uses
these annotations, so one site has one status everywhere. They are correlated subqueries on
indexed columns: a page of 20 sites computes 20 rows; counting statuses over 10,000 sites is
one aggregate.

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
    """The §4.1 status of the site in the outer query, as a CASE over two EXISTS."""
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


def _answering_site_ids() -> QuerySet:
    """Ids of sites with a device that answers: an inverter running or in standby, or a
    gateway online (one set, so PostgreSQL can join it once rather than probe per site)."""
    inverters = Inverter.objects.filter(status__in=ANSWERING, site__isnull=False)
    gateways = Gateway.objects.filter(status=GatewayStatus.ONLINE, site__isnull=False)
    return (
        inverters.order_by()
        .values("site_id")
        .union(gateways.order_by().values("site_id"), all=True)
    )


def filter_status(sites: QuerySet, status: str) -> QuerySet:
    """The sites of `sites` whose §4.1 status is `status` — the same rule as
    `status_expression`, written as joins a filter over the whole fleet can use (a CASE in
    WHERE makes PostgreSQL probe the devices of every site one by one)."""
    faulty = Inverter.objects.filter(status=InverterStatus.FAULT, site__isnull=False)
    faulty_ids = faulty.order_by().values("site_id")
    if status == SiteStatus.ABNORMAL:
        return sites.filter(pk__in=faulty_ids)
    healthy = sites.exclude(pk__in=faulty_ids)
    if status == SiteStatus.ONLINE:
        return healthy.filter(pk__in=_answering_site_ids())
    if status == SiteStatus.OFFLINE:
        return healthy.exclude(pk__in=_answering_site_ids())
    return sites.none()


def with_status(sites: QuerySet) -> QuerySet:
    """Annotate `status` (a `SiteStatus` value); filter and sort on it like a column."""
    return sites.annotate(status=status_expression())


def status_counts(sites: QuerySet) -> dict[str, int]:
    """How many of `sites` are online, offline and abnormal (one query), plus `total`."""
    rows = (
        with_status(sites.order_by())
        .values("status")
        .annotate(n=models.Count("pk"))
        .values_list("status", "n")
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
    "filter_status",
    "GATEWAY_TONE",
    "INVERTER_TONE",
    "STATUS_TONE",
    "SiteStatus",
    "online_rate",
    "status_counts",
    "status_expression",
    "with_figures",
    "with_status",
]
