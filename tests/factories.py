"""Factories for the tenant tree (companies and users with roles), verification codes, account
audit events, sites, gateways, inverters, their telemetry and alarms, and remote operations, and
the profile form's data."""

import datetime

import factory
from django.conf import settings
from django.utils import timezone

from accounts.models import AuditAction, AuditEvent, Company, CompanyType, Role, User
from devices import protocol

DEMO_PASSWORD = "Demo-pass1!"


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    type = CompanyType.INSTALLER
    name = factory.Sequence(lambda n: f"Company {n}")
    country = "DE"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    username = factory.Sequence(lambda n: f"User {n}")
    company = factory.SubFactory(CompanyFactory)
    role = Role.ADMIN
    password = factory.PostGenerationMethodCall("set_password", DEMO_PASSWORD)

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class VerificationCodeFactory(factory.django.DjangoModelFactory):
    """A registration code for `email`, just sent and still valid; `code=` is the six digits
    the recipient would type (only its hash is stored)."""

    class Meta:
        model = "accounts.VerificationCode"

    class Params:
        code = "123456"

    email = factory.Sequence(lambda n: f"code{n}@example.com")
    purpose = "register"
    user = None
    code_hash = factory.LazyAttribute(lambda o: _code_hash(o.email, o.purpose, o.code))
    created_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyAttribute(
        lambda o: o.created_at + datetime.timedelta(seconds=settings.VERIFICATION_CODE_TTL_SECONDS)
    )


def _code_hash(email: str, purpose: str, code: str) -> str:
    from accounts.codes import _hash

    return _hash(email, purpose, code)


class AuditEventFactory(factory.django.DjangoModelFactory):
    """A user edit by `actor`, scoped to the actor's company as the audit helper would."""

    class Meta:
        model = AuditEvent

    actor = factory.SubFactory(UserFactory)
    actor_label = factory.LazyAttribute(lambda o: o.actor.email if o.actor else "")
    company = factory.LazyAttribute(lambda o: o.actor.company if o.actor else None)
    company_path = factory.LazyAttribute(lambda o: o.company.path if o.company else "")
    action = AuditAction.USER_EDITED
    object_type = "accounts.user"
    object_id = factory.LazyAttribute(lambda o: str(o.actor.pk) if o.actor else "0")
    object_label = factory.LazyAttribute(lambda o: str(o.actor) if o.actor else "")
    before = factory.LazyFunction(lambda: {"description": ""})
    after = factory.LazyFunction(lambda: {"description": "Service team"})


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "pv_sites.Site"

    company = factory.SubFactory(CompanyFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    address = "Via Roma 1"
    country = "IT"
    latitude = "45.460000"
    longitude = "9.190000"
    time_zone = "Europe/Rome"
    capacity_kwp = 10
    tariff_per_kwh = "0.25"


class GatewayFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "gateways.Gateway"

    serial_number = factory.Sequence(lambda n: f"GW{n:08d}")
    site = factory.SubFactory(SiteFactory)
    company = factory.SelfAttribute("site.company")


class InverterFactory(factory.django.DjangoModelFactory):
    """An ECH10K-TH-EU at bus address 1 of its gateway, on the gateway's site and company."""

    class Meta:
        model = "inverters.Inverter"

    serial_number = factory.Sequence(lambda n: f"INV{n:08d}")
    model = "ECH10K-TH-EU"
    gateway = factory.SubFactory(GatewayFactory)
    modbus_address = 1
    company = factory.SelfAttribute("gateway.company")
    site = factory.SelfAttribute("gateway.site")


class TelemetryLayoutFactory(factory.django.DjangoModelFactory):
    """The keys of `Sample.vals` for one register-map version of an ECH10K-TH-EU."""

    class Meta:
        model = "inverters.TelemetryLayout"

    model = "ECH10K-TH-EU"
    map_version = factory.Sequence(lambda n: f"1.{n}")
    keys = factory.LazyFunction(lambda: ["batt_voltage", "grid_frequency"])


class SampleFactory(factory.django.DjangoModelFactory):
    """One stored upload of an inverter, now, in the layout ingest uses for its model; the
    day's partition is created when missing."""

    class Meta:
        model = "inverters.Sample"

    inverter = factory.SubFactory(InverterFactory)
    ts = factory.LazyFunction(timezone.now)
    layout_id = factory.LazyAttribute(lambda o: _layout_id(o.inverter.model))
    pv_power = 5000.0
    batt_soc = 64.0

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from inverters.telemetry import ensure_partitions

        ensure_partitions([kwargs["ts"].astimezone(datetime.UTC).date()])
        return super()._create(model_class, *args, **kwargs)


def _layout_id(model: str) -> int:
    from devices.decoding import codec_for_model
    from inverters.telemetry import layout_id_for

    return layout_id_for(codec_for_model(model))


class InverterLatestFactory(factory.django.DjangoModelFactory):
    """The newest upload of an inverter, sampled and received now."""

    class Meta:
        model = "inverters.InverterLatest"

    inverter = factory.SubFactory(InverterFactory)
    company = factory.SelfAttribute("inverter.company")
    site = factory.SelfAttribute("inverter.site")
    ts = factory.LazyFunction(timezone.now)
    received_at = factory.SelfAttribute("ts")


class EnergyDailyFactory(factory.django.DjangoModelFactory):
    """An inverter's energy of one day (today unless `day=`), all totals zero."""

    class Meta:
        model = "inverters.EnergyDaily"

    inverter = factory.SubFactory(InverterFactory)
    company = factory.SelfAttribute("inverter.company")
    site = factory.SelfAttribute("inverter.site")
    day = factory.LazyFunction(lambda: timezone.now().date())


class SiteEnergyDailyFactory(factory.django.DjangoModelFactory):
    """A site's energy of one day (today unless `day=`), all totals zero."""

    class Meta:
        model = "inverters.SiteEnergyDaily"

    site = factory.SubFactory(SiteFactory)
    company = factory.SelfAttribute("site.company")
    day = factory.LazyFunction(lambda: timezone.now().date())


class SiteEnergyMonthlyFactory(factory.django.DjangoModelFactory):
    """A site's energy of one month (this month unless `month=`), all totals zero."""

    class Meta:
        model = "inverters.SiteEnergyMonthly"

    site = factory.SubFactory(SiteFactory)
    company = factory.SelfAttribute("site.company")
    month = factory.LazyFunction(lambda: timezone.now().date().replace(day=1))


class RejectedMessageFactory(factory.django.DjangoModelFactory):
    """A telemetry upload of a known gateway that ingest refused as not JSON."""

    class Meta:
        model = "inverters.RejectedMessage"

    gateway = factory.SubFactory(GatewayFactory)
    gateway_serial = factory.SelfAttribute("gateway.serial_number")
    company = factory.SelfAttribute("gateway.company")
    topic = factory.LazyAttribute(lambda o: protocol.topic(o.gateway_serial, protocol.TELEMETRY))
    payload = b"not json"
    payload_size = factory.LazyAttribute(lambda o: len(o.payload))
    reason = "payload is not JSON"
    received_at = factory.LazyFunction(timezone.now)


class GatewayReplyFactory(factory.django.DjangoModelFactory):
    """A gateway's successful answer to a command, not yet picked up."""

    class Meta:
        model = "inverters.GatewayReply"

    gateway = factory.SubFactory(GatewayFactory)
    company = factory.SelfAttribute("gateway.company")
    command_id = factory.Sequence(lambda n: f"cmd-{n:08d}")
    ok = True
    result = factory.LazyFunction(dict)
    received_at = factory.LazyFunction(timezone.now)


class AlarmFactory(factory.django.DjangoModelFactory):
    """An occurring Warn0070 (low battery voltage) of an inverter, on its site and company."""

    class Meta:
        model = "alarms.Alarm"

    inverter = factory.SubFactory(InverterFactory)
    company = factory.SelfAttribute("inverter.company")
    site = factory.SelfAttribute("inverter.site")
    code = "Warn0070"
    level = "common"
    message = "Low Batt volt"
    occurred_at = factory.LazyFunction(timezone.now)


def profile_form_data(user: User, **overrides) -> dict:
    """What the user configuration form posts for `user`, with some fields changed."""
    return {
        "username": user.username,
        "currency": user.currency,
        "language": user.language,
        "time_zone": user.time_zone,
        **overrides,
    }


class RemoteOperationFactory(factory.django.DjangoModelFactory):
    """A finished register read; `created_at=` backdates the record (the field is set on
    insert)."""

    class Meta:
        model = "maintenance.RemoteOperation"
        skip_postgeneration_save = True

    gateway = factory.SubFactory(GatewayFactory)
    site = factory.SelfAttribute("gateway.site")
    company = factory.SelfAttribute("gateway.company")
    device_serial = factory.LazyAttribute(lambda o: f"{o.gateway.serial_number}I1")
    user = None
    user_email = factory.LazyAttribute(lambda o: o.user.email if o.user else "")
    kind = "read"
    summary = "Read work mode"
    command_id = factory.Sequence(lambda n: f"cmd-{n:08d}")
    state = "succeeded"
    deadline = factory.LazyFunction(lambda: timezone.now() + datetime.timedelta(seconds=30))

    @factory.post_generation
    def created_at(obj, create, extracted, **kwargs):
        if create and extracted:
            type(obj).objects.filter(pk=obj.pk).update(created_at=extracted)
            obj.created_at = extracted


class CommissioningReportFactory(factory.django.DjangoModelFactory):
    """A finished commissioning report (without a PDF) of a site in North America."""

    class Meta:
        model = "fleet.CommissioningReport"

    site = factory.SubFactory(SiteFactory, country="US", time_zone="America/Chicago")
    company = factory.SelfAttribute("site.company")
    name = factory.Sequence(lambda n: f"Commission Report {n}")
    status = "finished"
    progress = 100
    finished_at = factory.LazyFunction(timezone.now)
