"""The alarm list (guide §8.1, §6.2.5, §6.4.2.4): one component that every page listing alarms
mounts — Maintenance → Alarm Management, a site's Alarm tab, an inverter's Alarm tab.

It is the shared list block (ui.lists.ObjectListView) with the guide's filters and columns:

- `AlarmFilter`: Site screening, Search SN, Select device, Alarm type (level), Alarm info
  (message or fault code), Status, Time zone (the zone the times are shown in, and in which
  the days of the time range start and end) and the time range on `occurred_at`. Every choice
  is scoped to the viewer; a bad value is a message on its field, never an error page.
- `AlarmTable`: Alarm type (level pill), Site, Time (in the chosen zone with its offset,
  `2024-12-04 13:12:34+01:00`), Device name, Fault code, Alarm info, Status, Operation
  ("Check", once a URL named `alarms:detail` exists). Downloads add the recovery time.
- `AlarmListMixin`: mounts both on an ObjectListView. A page narrows it with hooks:

      class SiteAlarmView(AlarmListMixin, SiteTabView, ObjectListView):
          hidden_alarm_filters = ("site", "sn")     # the site is fixed; pick a device instead
          hidden_alarm_columns = ("site",)

          def alarm_scope(self):                    # the rows the list may show, at most
              return Alarm.objects.visible_to(self.request.user).filter(site=self.object)

          def alarm_devices(self):                  # "Select device"; None hides it
              return Inverter.objects.visible_to(self.request.user).filter(site=self.object)

          def alarm_default_time_zone(self):        # the Time zone filter's default
              return self.object.time_zone

  The page's template includes `alarms/_list.html` (filters, Download, the table) where its
  list goes, or extends `ui/list.html`.
"""

from __future__ import annotations

import datetime
import zoneinfo
from functools import cache
from typing import Any

import django_filters
import django_tables2 as tables
from django import forms
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from alarms.models import Alarm, AlarmLevel, AlarmStatus
from inverters.models import Inverter
from sites.models import Site
from ui.filters import DateRangeFilterForm, DateRangeFilterSet
from ui.tables import BaseTable

# The zones the Time zone filter offers, west to east; the viewer's and the site's zone are
# added when they are not among them.
COMMON_TIME_ZONES = (
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/Denver",
    "America/Chicago",
    "America/Mexico_City",
    "America/New_York",
    "America/Toronto",
    "America/Halifax",
    "America/Puerto_Rico",
    "America/Sao_Paulo",
    "America/St_Johns",
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Brussels",
    "Europe/Amsterdam",
    "Europe/Berlin",
    "Europe/Zurich",
    "Europe/Vienna",
    "Europe/Rome",
    "Europe/Prague",
    "Europe/Warsaw",
    "Europe/Stockholm",
    "Europe/Oslo",
    "Europe/Copenhagen",
    "Africa/Johannesburg",
    "Europe/Helsinki",
    "Europe/Athens",
    "Europe/Bucharest",
    "Europe/Kyiv",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Bangkok",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Australia/Perth",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
)
FALLBACK_TIME_ZONE = "UTC"
# The URL of one alarm's page (issue 16); until it exists the Operation column stays empty.
DETAIL_URL_NAME = "alarms:detail"
# Most severe first, for sorting by Alarm type.
LEVEL_RANK = {level: rank for rank, level in enumerate(AlarmLevel.values)}


@cache
def load_zone(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone called `name`, or None when the tz database does not know it."""
    if not name or not isinstance(name, str):
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


def valid_zone_name(*candidates: str | None) -> str:
    """The first of `candidates` the tz database knows, else UTC."""
    for name in candidates:
        if name and load_zone(name) is not None:
            return name
    return FALLBACK_TIME_ZONE


def time_zone_choices(*extra: str) -> list[tuple[str, str]]:
    """(zone, "zone (UTC±hh:mm)") for the common zones and `extra`, by their offset now."""
    names = [name for name in dict.fromkeys((*COMMON_TIME_ZONES, *extra)) if load_zone(name)]
    now = timezone.now()
    offsets = {name: now.astimezone(load_zone(name)).utcoffset() for name in names}
    names.sort(key=lambda name: (offsets[name], name))
    return [(name, f"{name} (UTC{_offset_text(offsets[name])})") for name in names]


def _offset_text(offset: datetime.timedelta | None) -> str:
    minutes = int((offset or datetime.timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{minutes:02d}"


def zone_time(value: datetime.datetime | None, zone: datetime.tzinfo | None) -> str:
    """`value` as the guide prints it, in `zone`: 2024-12-04 13:12:34+01:00."""
    if value is None:
        return ""
    local = value.astimezone(zone or timezone.get_current_timezone())
    return local.isoformat(sep=" ", timespec="seconds")


def with_level_rank(queryset: QuerySet) -> QuerySet:
    """Alarms with `level_rank` (0 = urgent … 3 = prompt), to sort by severity."""
    return queryset.annotate(
        level_rank=Case(
            *(When(level=level, then=Value(rank)) for level, rank in LEVEL_RANK.items()),
            default=Value(len(LEVEL_RANK)),
            output_field=IntegerField(),
        )
    )


# --- Filters ------------------------------------------------------------------------------------


class DeviceChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Inverter) -> str:
        if obj.name and obj.name != obj.serial_number:
            return f"{obj.serial_number} · {obj.name}"
        return obj.serial_number


class DeviceFilter(django_filters.ModelChoiceFilter):
    field_class = DeviceChoiceField


def _visible_sites(request) -> QuerySet:
    if request is None:
        return Site.objects.none()
    return Site.objects.visible_to(request.user).order_by("name", "pk")


class AlarmFilter(DateRangeFilterSet):
    """Guide §8.1's filters. `devices` (the inverters to pick from) adds Select device;
    `hidden` names filters the page does without; `default_time_zone` is the Time zone
    shown until the viewer picks another."""

    date_field = "occurred_at"

    site = django_filters.ModelChoiceFilter(
        label=_("Site screening"),
        field_name="site",
        queryset=_visible_sites,
        empty_label=_("All sites"),
    )
    sn = django_filters.CharFilter(
        label=_("Search SN"),
        method="filter_serial",
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": _("Device SN"), "autocomplete": "off"}),
    )
    device = DeviceFilter(
        label=_("Select device"),
        field_name="inverter",
        queryset=Inverter.objects.none(),
        empty_label=_("All devices"),
    )
    level = django_filters.ChoiceFilter(
        label=_("Alarm type"), choices=AlarmLevel.choices, empty_label=_("All types")
    )
    info = django_filters.CharFilter(
        label=_("Alarm info"),
        method="filter_info",
        max_length=200,
        widget=forms.TextInput(
            attrs={"placeholder": _("Message or fault code"), "autocomplete": "off"}
        ),
    )
    status = django_filters.ChoiceFilter(
        label=_("Status"), choices=AlarmStatus.choices, empty_label=_("All statuses")
    )
    tz = django_filters.ChoiceFilter(
        label=_("Time zone"), method="keep_rows", choices=(), empty_label=None
    )

    class Meta:
        model = Alarm
        fields = (
            "site",
            "sn",
            "device",
            "level",
            "info",
            "status",
            "tz",
            "date_from",
            "date_to",
        )
        form = DateRangeFilterForm  # the range's checks: order, bounds

    def __init__(
        self,
        data: Any = None,
        queryset: QuerySet | None = None,
        *,
        request: Any = None,
        devices: QuerySet | None = None,
        hidden: tuple[str, ...] = (),
        default_time_zone: str = "",
        **kwargs: Any,
    ) -> None:
        self.default_time_zone = valid_zone_name(default_time_zone)
        if data is not None and not data.get("tz"):
            # Unchosen, the zone is the default one: the select shows it and times use it.
            data = data.copy()
            data["tz"] = self.default_time_zone
        super().__init__(data, queryset, request=request, **kwargs)
        for name in hidden:
            self.filters.pop(name, None)
        if devices is None:
            self.filters.pop("device", None)
        else:
            self.filters["device"].queryset = devices
        extra = [self.default_time_zone]
        if request is not None:
            extra.append(getattr(request.user, "time_zone", ""))
        zone_filter = self.filters.get("tz")
        if zone_filter is not None:
            zone_filter.extra["choices"] = time_zone_choices(*extra)
            zone_filter.extra["initial"] = self.default_time_zone

    @property
    def time_zone(self) -> zoneinfo.ZoneInfo:
        """The zone the list shows its times in (and in which the range's days begin)."""
        name = self.default_time_zone
        if self.is_bound:
            self.form.is_valid()
            name = self.form.cleaned_data.get("tz") or name
        return load_zone(valid_zone_name(name))

    def keep_rows(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset  # the zone changes how times read, not which rows match

    def filter_serial(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        return queryset.filter(inverter__serial_number__icontains=value) if value else queryset

    def filter_info(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(message__icontains=value) | Q(code__icontains=value))

    def filter_from(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        return queryset.filter(occurred_at__gte=self._midnight(value))

    def filter_to(self, queryset: QuerySet, name: str, value: datetime.date) -> QuerySet:
        # Inclusive: everything before the next day's midnight.
        return queryset.filter(occurred_at__lt=self._midnight(value + datetime.timedelta(days=1)))

    def _midnight(self, day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time.min, tzinfo=self.time_zone)


# --- Table --------------------------------------------------------------------------------------


class AlarmTable(BaseTable):
    """The guide's columns (Figure 8-1), all of them always shown; `time_zone` is the zone of
    the Time column (the list view sets it from the filter)."""

    level = tables.Column(
        verbose_name=_("Alarm type"),
        order_by=("level_rank",),
        attrs={"td": {"class": "text-nowrap"}},
    )
    site = tables.Column(verbose_name=_("Site"), order_by=("site__name", "site_id"))
    occurred_at = tables.Column(
        verbose_name=_("Time"), attrs={"td": {"class": "text-nowrap font-monospace small"}}
    )
    inverter = tables.Column(verbose_name=_("Device name"), order_by=("inverter__serial_number",))
    code = tables.Column(verbose_name=_("Fault code"), attrs={"td": {"class": "text-nowrap"}})
    message = tables.Column(verbose_name=_("Alarm info"))
    status = tables.Column(verbose_name=_("Status"), attrs={"td": {"class": "text-nowrap"}})
    operation = tables.Column(
        verbose_name=pgettext_lazy("alarm list", "Operation"),
        accessor="pk",
        orderable=False,
        empty_values=(),
        exclude_from_export=True,
        attrs={"td": {"class": "text-nowrap"}},
    )
    recovered_at = tables.Column(verbose_name=_("Recovered"))
    inverter_name = tables.Column(
        verbose_name=_("Inverter name"), accessor="inverter__name", orderable=False
    )

    time_zone: datetime.tzinfo | None = None
    _detail_url: bool | None = None

    class Meta(BaseTable.Meta):
        model = Alarm
        fields = (
            "level",
            "site",
            "occurred_at",
            "inverter",
            "code",
            "message",
            "status",
            "operation",
            "recovered_at",
            "inverter_name",
        )
        sequence = fields
        required_columns = fields[:8]
        download_only = ("recovered_at", "inverter_name")
        empty_text = _("No alarms match.")
        default = "–"

    def hide(self, names: tuple[str, ...]) -> None:
        """Leave these columns out of the page and the downloads (e.g. Site on a site's page)."""
        for name in names:
            self.columns.hide(name)
        self.visible_columns = [column.name for column in self.columns.iterall() if column.visible]

    def detail_url(self, pk: int) -> str:
        """The alarm's page, or "" while the portal has none."""
        if self._detail_url is False:
            return ""
        try:
            url = reverse(DETAIL_URL_NAME, args=[pk])
        except NoReverseMatch:
            self._detail_url = False
            return ""
        self._detail_url = True
        return url

    # The page.

    def render_level(self, record: Alarm) -> str:
        return render_to_string(
            "alarms/_level_pill.html", {"level": record.level, "label": record.get_level_display()}
        )

    def render_status(self, record: Alarm) -> str:
        return render_to_string(
            "alarms/_status_pill.html",
            {"status": record.status, "label": record.get_status_display()},
        )

    def render_occurred_at(self, value: datetime.datetime) -> str:
        return zone_time(value, self.time_zone)

    def render_inverter(self, value: Inverter) -> str:
        if value.name and value.name != value.serial_number:
            return format_html(
                '<span class="font-monospace">{}</span><div class="small text-secondary">{}</div>',
                value.serial_number,
                value.name,
            )
        return format_html('<span class="font-monospace">{}</span>', value.serial_number)

    def render_message(self, value: str) -> str:
        return format_html('<span class="alarm-info" title="{}">{}</span>', value, value)

    def render_operation(self, record: Alarm) -> str:
        url = self.detail_url(record.pk)
        if not url:
            return ""
        return format_html(
            '<a href="{}" class="btn btn-sm btn-outline-primary">{}</a>',
            url,
            pgettext_lazy("alarm list", "Check"),
        )

    # A download: the text of each cell.

    def value_level(self, record: Alarm) -> str:
        return str(record.get_level_display())

    def value_status(self, record: Alarm) -> str:
        return str(record.get_status_display())

    def value_site(self, value: Site) -> str:
        return value.name

    def value_occurred_at(self, value: datetime.datetime) -> str:
        return zone_time(value, self.time_zone)

    def value_recovered_at(self, value: datetime.datetime | None) -> str:
        return zone_time(value, self.time_zone)

    def value_inverter(self, value: Inverter) -> str:
        return value.serial_number

    def value_message(self, value: str) -> str:
        return value


# --- Mounting -----------------------------------------------------------------------------------


class AlarmListMixin:
    """The alarm list on an ObjectListView (see the module docstring for the hooks)."""

    model = Alarm
    table_class = AlarmTable
    filterset_class = AlarmFilter
    htmx_target = "alarm-table"
    export_filename = "alarms"
    empty_icon = "bell"
    empty_text = _("No alarms. When a device reports a fault, it shows here.")
    empty_filtered_text = _("No alarm matches these filters.")
    reset_label = _("Show all alarms")
    compact_actions = True  # Download sits in the list's card header
    hidden_alarm_filters: tuple[str, ...] = ()
    hidden_alarm_columns: tuple[str, ...] = ()

    # --- Hooks ----------------------------------------------------------------------------------

    def alarm_scope(self) -> QuerySet:
        """Every alarm the list may show; the filters narrow it."""
        return Alarm.objects.visible_to(self.request.user)

    def alarm_devices(self) -> QuerySet | None:
        """The inverters of "Select device", or None for a list without it."""
        return None

    def alarm_default_time_zone(self) -> str:
        """The zone times are shown in until the viewer picks one: theirs."""
        return getattr(self.request.user, "time_zone", "") or FALLBACK_TIME_ZONE

    # --- The list block -------------------------------------------------------------------------

    def get_queryset(self) -> QuerySet:
        return with_level_rank(self.alarm_scope()).select_related("site", "inverter")

    def get_filterset(self) -> AlarmFilter:
        if self._filterset is None:
            self._filterset = self.filterset_class(
                self.request.GET or None,
                queryset=self.get_queryset(),
                request=self.request,
                devices=self.alarm_devices(),
                hidden=self.hidden_alarm_filters,
                default_time_zone=self.alarm_default_time_zone(),
            )
        return self._filterset

    def get_table(self, paginate: bool = True) -> AlarmTable:
        table = super().get_table(paginate=paginate)
        table.time_zone = self.get_filterset().time_zone
        table.hide(self.hidden_alarm_columns)
        return table

    def get_export_title(self) -> str:
        return str(_("Alarms"))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        kwargs.setdefault("alarm_time_zone", self.get_filterset().time_zone)
        return super().get_context_data(**kwargs)


__all__ = [
    "COMMON_TIME_ZONES",
    "AlarmFilter",
    "AlarmListMixin",
    "AlarmTable",
    "time_zone_choices",
    "valid_zone_name",
    "with_level_rank",
    "zone_time",
]
