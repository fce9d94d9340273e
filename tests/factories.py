"""Factories for the tenant tree (companies and users with roles), sites, gateways, inverters
and remote operations, and the profile form's data."""

import datetime

import factory
from django.utils import timezone

from accounts.models import Company, CompanyType, Role, User

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
        model = "gateways.RemoteOperation"
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
