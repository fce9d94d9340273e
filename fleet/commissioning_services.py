"""Commissioning reports (guide §6.2.7): create, update (rebuild), delete and send by email.

The accounts services' convention: keyword `acting_user`, the checks (scope, role
`site.manage`, a North-American site) before anything changes, one audit row in the change's
transaction, and the work (building, mailing) handed to a worker once the transaction commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import audit
from accounts.models import AuditAction
from accounts.permissions import require
from accounts.stored_files import delete_on_commit
from fleet.models import CommissioningReport, ReportStatus
from fleet.tasks import build_commissioning_report, email_commissioning_report
from fleet.views.site_base import is_north_american
from gateways.models import Gateway
from inverters.models import Inverter
from sites.models import Site

if TYPE_CHECKING:
    from accounts.models import User

AUDITED_FIELDS = ("name", "email", "site")


def check_site(user: User, site: Site) -> None:
    """The site is in the user's scope, the user may manage it, and it has commissioning."""
    if not Site.objects.visible_to(user).filter(pk=site.pk).exists():
        raise PermissionDenied(_("This site does not exist or is not yours to manage."))
    require(user, "site.manage", site)
    if not is_north_american(site):
        raise ValidationError(
            _("Commissioning reports are only available for sites in North America.")
        )


def create_report(
    site: Site,
    *,
    acting_user: User,
    name: str,
    email: str = "",
    gateways: Iterable[Gateway] = (),
    inverters: Iterable[Inverter] = (),
) -> CommissioningReport:
    """Queue a new report of the selected devices of `site`."""
    check_site(acting_user, site)
    gateway_ids = {g.pk for g in gateways}
    inverter_ids = {i.pk for i in inverters}
    if not gateway_ids and not inverter_ids:
        raise ValidationError(_("Select at least one gateway or inverter."))
    # Only devices of this site that the user may see, whatever the caller passed.
    found_gateways = list(
        Gateway.objects.visible_to(acting_user).filter(site=site, pk__in=gateway_ids)
    )
    found_inverters = list(
        Inverter.objects.visible_to(acting_user).filter(site=site, pk__in=inverter_ids)
    )
    if len(found_gateways) != len(gateway_ids) or len(found_inverters) != len(inverter_ids):
        raise ValidationError(_("Some of the selected devices are not on this site."))
    now = timezone.now()
    with transaction.atomic():
        report = CommissioningReport.objects.create(
            site=site,
            company_id=site.company_id,
            name=name,
            email=email,
            created_by=acting_user,
            run_by=acting_user,
            started_at=now,
        )
        report.gateways.set(found_gateways)
        report.inverters.set(found_inverters)
        audit.record(
            acting_user,
            AuditAction.COMMISSIONING_CREATED,
            report,
            after={
                **audit.initial(report, AUDITED_FIELDS),
                "gateways": sorted(g.serial_number for g in found_gateways),
                "inverters": sorted(i.serial_number for i in found_inverters),
            },
        )
        _enqueue_build(report)
    return report


def update_report(report: CommissioningReport, *, acting_user: User) -> CommissioningReport:
    """Update: build the report again with the devices' current data (a new generation; a
    worker still busy with the old one changes nothing)."""
    check_site(acting_user, report.site)
    with transaction.atomic():
        locked = CommissioningReport.objects.select_for_update().get(pk=report.pk)
        if locked.in_progress and not locked.is_stale:
            raise ValidationError(
                _("“%(name)s” is being generated. Update it when it has finished.")
                % {"name": locked.name}
            )
        CommissioningReport.objects.filter(pk=report.pk).update(
            generation=F("generation") + 1,
            status=ReportStatus.QUEUED,
            progress=0,
            error="",
            run_by=acting_user,
            started_at=timezone.now(),
            finished_at=None,
        )
        locked.refresh_from_db()
        audit.record(acting_user, AuditAction.COMMISSIONING_UPDATED, locked)
        _enqueue_build(locked)
    return locked


def delete_report(report: CommissioningReport, *, acting_user: User) -> None:
    """Delete the report and its PDF; a build still running for it stops at its next step."""
    check_site(acting_user, report.site)
    with transaction.atomic():
        audit.record(
            acting_user,
            AuditAction.COMMISSIONING_DELETED,
            report,
            before=audit.initial(report, AUDITED_FIELDS),
        )
        delete_on_commit(report.pdf)
        report.delete()


def send_report(report: CommissioningReport, *, acting_user: User, email: str) -> None:
    """Send Email: mail the finished PDF to `email` (stored as the report's address)."""
    check_site(acting_user, report.site)
    if not report.has_pdf:
        raise ValidationError(_("The report can be sent when it has finished."))
    with transaction.atomic():
        before = audit.snapshot(report, ["email"])
        CommissioningReport.objects.filter(pk=report.pk).update(email=email, email_error="")
        report.email = email
        audit.record(acting_user, AuditAction.COMMISSIONING_SENT, report, before, {"email": email})
        pk = report.pk
        transaction.on_commit(lambda: email_commissioning_report.delay(pk))


def _enqueue_build(report: CommissioningReport) -> None:
    pk, generation = report.pk, report.generation
    transaction.on_commit(lambda: build_commissioning_report.delay(pk, generation))
