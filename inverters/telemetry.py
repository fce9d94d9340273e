"""Telemetry storage: one wide row per inverter sample, latest values and daily energy rollups.

Why this shape (DESIGN §4, the telemetry-storage notes):

- `inverters_sample` is partitioned by RANGE(ts), one partition per UTC day, created ahead and
  dropped by retention (`TELEMETRY_RETENTION_DAYS`). Its primary key (inverter_id, ts) makes a
  resent upload a no-op. Typed columns hold what pages chart and roll up; every other decoded
  point travels in `vals`, a float4[] in the order of its `TelemetryLayout` (map model + version).
- Ingest writes a batch with one binary COPY into a temporary staging table, then a handful of
  set-based statements (`ingest.storage`): insert new samples, merge the touched energy
  days, mend the day after when its baseline moved, upsert the latest rows.
- Pages never read the raw table for more than a day: `InverterLatest`, `EnergyDaily` and
  `SiteEnergyDaily` are scoped like every other model (denormalised `company`).

The decoder (`devices.decoding.Codec`) turns raw poll blocks into those columns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import connection, models, transaction
from django.db.utils import DatabaseError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.scoping import ScopedQuerySet
from devices.decoding import TYPED_POINTS, Codec, codec_for_model
from sites.models import SiteDeviceQuerySet

logger = logging.getLogger(__name__)

SAMPLE_TABLE = "inverters_sample"
DEFAULT_RETENTION_DAYS = 90
DEFAULT_PARTITIONS_AHEAD = 3


def retention_days() -> int:
    return int(getattr(settings, "TELEMETRY_RETENTION_DAYS", DEFAULT_RETENTION_DAYS))


# ---------------------------------------------------------------------------------------------
# Models


class TelemetryLayout(models.Model):
    """What `Sample.vals` means: the keys of one register-map version, in array order."""

    model = models.CharField(_("equipment model"), max_length=32)
    map_version = models.CharField(_("register map version"), max_length=48)
    keys = models.JSONField(_("keys"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "map_version"], name="layout_unique_version")
        ]

    def __str__(self) -> str:
        return f"{self.model} v{self.map_version}"


class _TelemetryColumns(models.Model):
    """The typed key points and the compact rest of one decoded upload (sample or latest)."""

    layout = models.ForeignKey(
        TelemetryLayout,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    run_status = models.IntegerField(null=True)
    pv_power = models.FloatField(null=True)
    batt_power = models.FloatField(null=True)
    grid_power = models.FloatField(null=True)
    load_power = models.FloatField(null=True)
    inv_power = models.FloatField(null=True)
    batt_soc = models.FloatField(null=True)
    batt_soh = models.FloatField(null=True)
    batt_temp = models.FloatField(null=True)
    inv_temp = models.FloatField(null=True)
    heatsink_temp = models.FloatField(null=True)
    internal_temp = models.FloatField(null=True)
    pv_energy_total = models.FloatField(null=True)
    charge_energy_total = models.FloatField(null=True)
    discharge_energy_total = models.FloatField(null=True)
    import_energy_total = models.FloatField(null=True)
    export_energy_total = models.FloatField(null=True)
    load_energy_total = models.FloatField(null=True)
    vals = ArrayField(models.FloatField(null=True), null=True)

    class Meta:
        abstract = True

    def values(self) -> dict[str, Any]:
        """Every stored point by register key, as numbers (enums and words raw)."""
        out = {key: getattr(self, col) for col, key, _ in TYPED_POINTS}
        if self.layout_id is not None:
            out.update(zip(self.layout.keys, self.vals or (), strict=False))
        return {k: v for k, v in out.items() if v is not None}

    def display_values(self, model: str) -> dict[str, Any]:
        """As the register map shows them: option keys, versions, fault codes."""
        return codec_for_model(model).present_raw(self.values())


class SampleQuerySet(ScopedQuerySet):
    company_path = "inverter__company"

    def visible_to_owner(self, user):
        from sites.models import Site

        return self.filter(inverter__site__in=Site.objects.visible_to(user))


class Sample(_TelemetryColumns):
    """One decoded upload of one inverter (read-only here: the table is partitioned SQL)."""

    pk = models.CompositePrimaryKey("inverter", "ts")
    inverter = models.ForeignKey(
        "inverters.Inverter", on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    ts = models.DateTimeField()
    fault_codes = ArrayField(models.CharField(max_length=40), null=True)

    objects = SampleQuerySet.as_manager()

    class Meta:
        managed = False
        db_table = SAMPLE_TABLE
        ordering = ["inverter", "ts"]

    def __str__(self) -> str:
        return f"{self.inverter_id} @ {self.ts.isoformat()}"


class InverterLatest(_TelemetryColumns):
    """The newest upload of one inverter; home and list pages read this, not the samples.

    The columns are the newest sample's (copied in SQL, so no per-upload JSON is built);
    `device_info` holds the device-information block (serial, model, firmware), uploaded
    hourly and replaced whenever it comes.
    """

    inverter = models.OneToOneField(
        "inverters.Inverter", primary_key=True, on_delete=models.CASCADE, related_name="latest"
    )
    company = models.ForeignKey("accounts.Company", on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(
        "pv_sites.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    ts = models.DateTimeField(_("sampled at"))
    received_at = models.DateTimeField(_("received at"))
    device_status = models.CharField(_("device status"), max_length=8, blank=True)
    fault_codes = ArrayField(models.CharField(max_length=40), default=list, blank=True)
    # The alarm engine's watermark: fault words of samples at or before it are applied.
    faults_ts = models.DateTimeField(null=True, blank=True)
    device_info = models.JSONField(_("device information"), default=dict)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("latest values")
        verbose_name_plural = _("latest values")
        indexes = [models.Index(fields=["company"]), models.Index(fields=["site"])]

    def __str__(self) -> str:
        return f"latest {self.inverter_id}"

    def display_values(self, model: str | None = None) -> dict[str, Any]:
        """Device information and the newest upload, as the register map shows them."""
        shown = super().display_values(model or self.inverter.model)
        return {**self.device_info, **shown}


class EnergyTotals(models.Model):
    """The energy of a period (a day, a month), by flow."""

    pv_kwh = models.FloatField(_("PV yield (kWh)"), default=0)
    charge_kwh = models.FloatField(_("charged (kWh)"), default=0)
    discharge_kwh = models.FloatField(_("discharged (kWh)"), default=0)
    import_kwh = models.FloatField(_("grid import (kWh)"), default=0)
    export_kwh = models.FloatField(_("grid export (kWh)"), default=0)
    load_kwh = models.FloatField(_("consumption (kWh)"), default=0)

    class Meta:
        abstract = True


class DayTotals(EnergyTotals):
    """What a day shows on energy pages, for an inverter or a whole site."""

    day = models.DateField(_("day"))
    peak_power_w = models.FloatField(_("peak PV power (W)"), null=True)
    min_soc = models.FloatField(_("minimum SOC (%)"), null=True)
    max_soc = models.FloatField(_("maximum SOC (%)"), null=True)

    class Meta:
        abstract = True


class EnergyDaily(DayTotals):
    """Energy of one inverter in one local day of its site, from its counters' deltas.

    A day's energy is its last counter reading minus the previous day's last reading (`*_base`,
    stored when the row is made and mended when that day changes later) or, when the previous
    day has none, minus its own first reading. First and last readings are kept so later
    batches, even out of order, merge without re-reading samples.
    """

    inverter = models.ForeignKey(
        "inverters.Inverter", on_delete=models.CASCADE, related_name="energy_days"
    )
    company = models.ForeignKey("accounts.Company", on_delete=models.CASCADE, related_name="+")
    site = models.ForeignKey(
        "pv_sites.Site", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    samples = models.PositiveIntegerField(_("samples"), default=0)
    first_ts = models.DateTimeField(null=True)
    last_ts = models.DateTimeField(null=True)
    pv_first = models.FloatField(null=True)
    pv_last = models.FloatField(null=True)
    pv_base = models.FloatField(null=True)
    charge_first = models.FloatField(null=True)
    charge_last = models.FloatField(null=True)
    charge_base = models.FloatField(null=True)
    discharge_first = models.FloatField(null=True)
    discharge_last = models.FloatField(null=True)
    discharge_base = models.FloatField(null=True)
    import_first = models.FloatField(null=True)
    import_last = models.FloatField(null=True)
    import_base = models.FloatField(null=True)
    export_first = models.FloatField(null=True)
    export_last = models.FloatField(null=True)
    export_base = models.FloatField(null=True)
    load_first = models.FloatField(null=True)
    load_last = models.FloatField(null=True)
    load_base = models.FloatField(null=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("daily energy")
        verbose_name_plural = _("daily energy")
        ordering = ["inverter", "day"]
        constraints = [
            models.UniqueConstraint(fields=["inverter", "day"], name="energydaily_unique_day")
        ]
        indexes = [models.Index(fields=["company", "day"]), models.Index(fields=["site", "day"])]

    def __str__(self) -> str:
        return f"{self.inverter_id} {self.day}"


class SiteEnergyDaily(DayTotals):
    """A site's day: sums of its inverters' days (peak = sum of their peaks, an upper bound)."""

    site = models.ForeignKey("pv_sites.Site", on_delete=models.CASCADE, related_name="energy_days")
    company = models.ForeignKey("accounts.Company", on_delete=models.CASCADE, related_name="+")
    inverters = models.PositiveIntegerField(_("inverters"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("daily site energy")
        verbose_name_plural = _("daily site energy")
        ordering = ["site", "day"]
        constraints = [
            models.UniqueConstraint(fields=["site", "day"], name="siteenergydaily_unique_day")
        ]
        indexes = [models.Index(fields=["company", "day"])]

    def __str__(self) -> str:
        return f"site {self.site_id} {self.day}"


class SiteEnergyMonthly(EnergyTotals):
    """A site's month (`month` is its first day): sums of its `SiteEnergyDaily` rows.

    Month, year and total views at fleet scale read these (12 rows a site a year) instead of
    summing days; ingest re-sums a month whenever one of its days changes.
    """

    site = models.ForeignKey(
        "pv_sites.Site", on_delete=models.CASCADE, related_name="energy_months"
    )
    company = models.ForeignKey("accounts.Company", on_delete=models.CASCADE, related_name="+")
    month = models.DateField(_("month"))
    days = models.PositiveSmallIntegerField(_("days with data"), default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SiteDeviceQuerySet.as_manager()

    class Meta:
        verbose_name = _("monthly site energy")
        verbose_name_plural = _("monthly site energy")
        ordering = ["site", "month"]
        constraints = [
            models.UniqueConstraint(fields=["site", "month"], name="siteenergymonthly_unique")
        ]
        indexes = [models.Index(fields=["company", "month"])]

    def __str__(self) -> str:
        return f"site {self.site_id} {self.month:%Y-%m}"


class RejectedMessage(models.Model):
    """An MQTT message (or one device entry of it) that ingest could not store, and why."""

    PAYLOAD_LIMIT = 2048

    topic = models.CharField(_("topic"), max_length=255)
    gateway_serial = models.CharField(_("gateway SN"), max_length=64, blank=True)
    gateway = models.ForeignKey(
        "gateways.Gateway", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    company = models.ForeignKey(
        "accounts.Company", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    payload = models.BinaryField(_("payload (truncated)"))
    payload_size = models.PositiveIntegerField(_("payload size"), default=0)
    reason = models.CharField(_("reason"), max_length=500)
    received_at = models.DateTimeField(_("received at"), db_index=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("rejected message")
        verbose_name_plural = _("rejected messages")
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["company", "received_at"])]

    def __str__(self) -> str:
        return f"{self.topic}: {self.reason}"


class GatewayReply(models.Model):
    """A gateway's answer to a command, kept for the remote-operations engine to pick up."""

    gateway = models.ForeignKey("gateways.Gateway", on_delete=models.CASCADE, related_name="+")
    company = models.ForeignKey("accounts.Company", on_delete=models.CASCADE, related_name="+")
    command_id = models.CharField(_("command id"), max_length=64)
    ok = models.BooleanField(_("ok"))
    result = models.JSONField(_("result"), default=dict)
    error = models.CharField(_("error"), max_length=500, blank=True)
    received_at = models.DateTimeField(_("received at"))
    consumed_at = models.DateTimeField(_("consumed at"), null=True, blank=True)

    objects = ScopedQuerySet.as_manager()

    class Meta:
        verbose_name = _("gateway reply")
        verbose_name_plural = _("gateway replies")
        constraints = [
            models.UniqueConstraint(fields=["gateway", "command_id"], name="reply_unique_command")
        ]
        indexes = [
            models.Index(
                fields=["received_at"],
                name="reply_unconsumed",
                condition=models.Q(consumed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.command_id} ok={self.ok}"


def pg_array(values: Iterable[Any]) -> str:
    """Ids or dates as ONE array-literal parameter (`= ANY(%s::bigint[])`).

    Django's psycopg cursor binds on the client and quotes list elements one by one in
    Python; a batch passes thousands of ids, so they travel as one string instead.
    """
    return "{" + ",".join(map(str, values)) + "}"


def layout_id_for(codec: Codec) -> int:
    """The TelemetryLayout row for a codec; a changed key list under one version gets its own."""
    layout, _ = TelemetryLayout.objects.get_or_create(
        model=codec.model, map_version=codec.map_version, defaults={"keys": codec.rest_keys}
    )
    if layout.keys != codec.rest_keys:
        digest = hashlib.sha1(json.dumps(codec.rest_keys).encode()).hexdigest()[:8]
        layout, _ = TelemetryLayout.objects.get_or_create(
            model=codec.model,
            map_version=f"{codec.map_version}+{digest}",
            defaults={"keys": codec.rest_keys},
        )
    return layout.pk


# ---------------------------------------------------------------------------------------------
# Partitions


def partition_name(day: dt.date) -> str:
    return f"{SAMPLE_TABLE}_p{day:%Y%m%d}"


def partition_days() -> set[dt.date]:
    """UTC days that have a partition."""
    prefix = f"{SAMPLE_TABLE}_p"
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass",
            [SAMPLE_TABLE],
        )
        names = [r[0] for r in cur.fetchall()]
    days = set()
    for name in names:
        if name.startswith(prefix):
            try:
                days.add(dt.date.fromisoformat(name[len(prefix) :]))
            except ValueError:
                continue
    return days


def ensure_partitions(days: Iterable[dt.date]) -> list[str]:
    """Create the daily partitions that are missing; safe when another process races us."""
    wanted = sorted(set(days) - partition_days())
    created = []
    for day in wanted:
        name = partition_name(day)
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        end = start + dt.timedelta(days=1)
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {SAMPLE_TABLE} "
                    f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
                )
            created.append(name)
        except DatabaseError as exc:  # a concurrent creator won, or a bound overlaps
            if day not in partition_days():
                raise
            logger.debug("partition %s appeared concurrently: %s", name, exc)
    if created:
        logger.info("created sample partitions %s", ", ".join(created))
    return created


def create_partitions_ahead(days_ahead: int | None = None, today: dt.date | None = None) -> list:
    """Partitions from yesterday to `days_ahead` days ahead (UTC), so ingest never waits."""
    if days_ahead is None:
        days_ahead = int(getattr(settings, "TELEMETRY_PARTITIONS_AHEAD", DEFAULT_PARTITIONS_AHEAD))
    today = today or timezone.now().astimezone(dt.UTC).date()
    return ensure_partitions(today + dt.timedelta(days=d) for d in range(-1, days_ahead + 1))


def drop_expired_partitions(keep_days: int | None = None, today: dt.date | None = None) -> list:
    """Drop whole days older than the retention; rollups are kept forever."""
    keep_days = retention_days() if keep_days is None else keep_days
    today = today or timezone.now().astimezone(dt.UTC).date()
    cutoff = today - dt.timedelta(days=keep_days)
    dropped = []
    for day in sorted(partition_days()):
        if day < cutoff:
            with connection.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
            dropped.append(partition_name(day))
    if dropped:
        logger.info("dropped expired sample partitions %s", ", ".join(dropped))
    return dropped


def accepted_window(now: dt.datetime | None = None) -> tuple[int, int]:
    """Sample timestamps (epoch ms) ingest stores: within retention, at most a day ahead."""
    now = now or timezone.now()
    oldest = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    oldest -= dt.timedelta(days=retention_days())
    return int(oldest.timestamp() * 1000), int((now + dt.timedelta(days=1)).timestamp() * 1000)


def day_bounds(day: dt.date, tz: str) -> tuple[dt.datetime, dt.datetime]:
    """A site's local day as an aware [start, end) interval, for charts within one day."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(tz)
    start = dt.datetime.combine(day, dt.time(), zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone)
    return start, end


def sample_counts(inverter_ids: Sequence[int] | None = None) -> int:
    """Stored samples (of some inverters): a test and fleet_status helper."""
    with connection.cursor() as cur:
        if inverter_ids is None:
            cur.execute(f"SELECT count(*) FROM {SAMPLE_TABLE}")
        else:
            cur.execute(
                f"SELECT count(*) FROM {SAMPLE_TABLE} WHERE inverter_id = ANY(%s)",
                [list(inverter_ids)],
            )
        return cur.fetchone()[0]
