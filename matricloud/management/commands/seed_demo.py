"""`manage.py seed_demo`: the demo tenant tree and its logins, created only where missing.

Safe to run on every start: an existing company or user is left exactly as it is, so a password
someone changed in the demo survives the next `make run`.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.management.base import BaseCommand
from django.db import transaction

from accounts.models import Company, CompanyType, Role, User

DEMO_PASSWORD = "Demo-pass1!"


@dataclass(frozen=True)
class DemoCompany:
    name: str
    type: str
    country: str
    superior: str | None


@dataclass(frozen=True)
class DemoUser:
    email: str
    username: str
    role: str
    company: str
    platform_admin: bool = False


DEMO_COMPANIES = (
    DemoCompany("MatriCloud", CompanyType.PLATFORM, "DE", None),
    DemoCompany("Helios Distribution", CompanyType.DISTRIBUTOR, "IT", "MatriCloud"),
    DemoCompany("SunFix Installers", CompanyType.INSTALLER, "DE", "Helios Distribution"),
    DemoCompany("Nordlicht Energie", CompanyType.DISTRIBUTOR, "DE", "MatriCloud"),
)

DEMO_USERS = (
    DemoUser("admin@matricloud.example", "Platform Admin", Role.ADMIN, "MatriCloud", True),
    DemoUser("admin@helios.example", "Helios Admin", Role.ADMIN, "Helios Distribution"),
    DemoUser("om@sunfix.example", "SunFix O&M", Role.OM, "SunFix Installers"),
    DemoUser("owner@sunfix.example", "Olivia Owner", Role.OWNER, "SunFix Installers"),
    DemoUser("admin@nordlicht.example", "Nordlicht Admin", Role.ADMIN, "Nordlicht Energie"),
)


class Command(BaseCommand):
    help = "Create the demo companies and logins that are missing (never changes existing ones)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--no-fleet",
            action="store_true",
            help="only companies and users, without the demo sites, gateways and inverters",
        )

    def handle(self, *args, **options) -> None:
        created = seed_demo()
        if not options["no_fleet"]:
            from matricloud.demo_fleet import ensure_demo_fleet

            fleet = ensure_demo_fleet()
            created += [f"{n} {kind}" for kind, n in fleet["created"].items() if n]
            created += seed_demo_firmware()
        for line in created:
            self.stdout.write(f"created {line}")
        if not created:
            self.stdout.write("demo data already present, nothing created")


@transaction.atomic
def seed_demo() -> list[str]:
    """Create what is missing; returns a line per created object."""
    created: list[str] = []
    companies: dict[str, Company] = {}
    for spec in DEMO_COMPANIES:
        superior = companies[spec.superior] if spec.superior else None
        company = Company.objects.filter(name=spec.name, superior=superior).first()
        if company is None:
            company = Company.objects.create(
                name=spec.name, type=spec.type, country=spec.country, superior=superior
            )
            created.append(f"company {spec.name} ({spec.type})")
        companies[spec.name] = company

    for spec in DEMO_USERS:
        if User.objects.filter(email=spec.email).exists():
            continue
        User.objects.create_user(
            spec.email,
            DEMO_PASSWORD,
            username=spec.username,
            role=spec.role,
            company=companies[spec.company],
            is_staff=spec.platform_admin,
            is_superuser=spec.platform_admin,
        )
        created.append(f"user {spec.email} ({spec.role}, {spec.company})")
    return created


def seed_demo_firmware() -> list[str]:
    """One gateway and one inverter release in the firmware catalogue, published by the
    platform administrator (when that login exists)."""
    from upgrades.release_services import ensure_demo_releases

    publisher = User.objects.filter(email=DEMO_USERS[0].email, is_active=True).first()
    return ensure_demo_releases(publisher) if publisher is not None else []
