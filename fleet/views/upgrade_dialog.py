"""The Upgrade dialog of one device (gateway §6.3.2.3, inverter §6.4.2.10 figure 6-63): Firmware,
Reservation and Time; Confirm creates a one-device upgrade task through the same service as
Upgrade → Add upgrade, and opens it. Each device page says only what differs: the device kind,
the firmware type, what the dialog shows beside the form and where Cancel goes."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.generic import TemplateView

from accounts.views.generic import ObjectMixin
from ui.dialogs import dialog_done, render_dialog
from upgrades import task_services
from upgrades.models import FirmwareRelease, TaskState, UpgradeTask
from upgrades.task_forms import DeviceUpgradeForm
from upgrades.views.task_add import add_errors


class DeviceUpgradeDialog(ObjectMixin, TemplateView):
    action = "upgrade.manage"
    kind: str  # upgrades.models.DeviceKind

    def firmware_type(self) -> str:
        """The board the dialog upgrades ("" for a gateway)."""
        return ""

    def dialog_context(self) -> dict[str, Any]:
        """What the template shows beside the form, and `next_url` for Cancel."""
        raise NotImplementedError

    def form(self, data: Any = None) -> DeviceUpgradeForm:
        return DeviceUpgradeForm(
            data,
            user=self.request.user,
            kind=self.kind,
            model=self.object.model,
            firmware_type=self.firmware_type(),
        )

    def show(self, form: DeviceUpgradeForm) -> HttpResponse:
        context = {"form": form, **self.dialog_context()}
        return render_dialog(self.request, self.template_name, context)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.show(self.form())

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = self.form(request.POST)
        if form.is_valid():
            release = FirmwareRelease.objects.filter(pk=form.cleaned_data["release"]).first()
            try:
                task = task_services.create_task(
                    request.user,
                    kind=self.kind,
                    release=release,
                    model=self.object.model,
                    firmware_type=self.firmware_type(),
                    reservation_at=form.reserve_at(),
                    devices=[self.object],
                )
            except ValidationError as error:
                add_errors(form, error, {"reservation_at": "time", "devices": None})
            else:
                messages.success(request, created_message(task, self.object.serial_number))
                return dialog_done(request, reverse("upgrades:task_detail", args=[task.pk]))
        return self.show(form)


def created_message(task: UpgradeTask, serial_number: str) -> str:
    """What the page says after a device's Upgrade dialog created its task."""
    values = {"number": task.pk, "sn": serial_number, "version": task.release.version}
    if task.state == TaskState.AWAITING_APPROVAL:
        text = _(
            "Upgrade task %(number)s of %(sn)s to %(version)s created; it starts once a second "
            "administrator approves it."
        )
    elif task.state == TaskState.SCHEDULED:
        values["at"] = timezone.localtime(task.reservation_at).strftime("%Y-%m-%d %H:%M")
        text = _("Upgrade task %(number)s of %(sn)s to %(version)s starts at %(at)s.")
    else:
        text = _("Upgrade task %(number)s of %(sn)s to %(version)s has started.")
    return text % values
