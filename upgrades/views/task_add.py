"""Add upgrade (guide §7.2.1, figures 7-4 and 7-5): model, firmware version, reservation, the
staged-rollout options and preconditions, and the devices.

One form on one page, plain HTML with htmx: the device picker's Search, pages, Select all and
Clear are submit buttons that re-show the page (without JavaScript) or fetch the picker alone
(htmx, `part=devices`); either way the request carries the selection and the page's ticks,
so the selection survives paging and filtering. Changing the model or firmware type re-shows
the form with that model's releases and devices.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.generic import TemplateView

from accounts.views.generic import ActionRequiredMixin
from upgrades import task_services
from upgrades.models import FirmwareRelease, TaskState
from upgrades.task_forms import DevicePicker, TaskForm, kind_of
from upgrades.views.tasks import section_context, tasks_url

PICKER_TARGET = "device-picker"


def add_errors(form: Any, error: ValidationError, aliases: dict[str, str]) -> None:
    """A service's ValidationError on the form's fields (or above them)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.message_dict.items():
        field = aliases.get(field, field)
        form.add_error(field if field in form.fields else None, errors)


class TaskAddView(ActionRequiredMixin, TemplateView):
    action = "upgrade.manage"
    template_name = "upgrades/tasks/add.html"

    def params(self) -> Any:
        return self.request.POST if self.request.method == "POST" else self.request.GET

    def render_page(self, form: TaskForm, picker: DevicePicker, **extra: Any) -> HttpResponse:
        kind = form.kind
        context = {
            **section_context(self.request, kind),
            "form": form,
            "picker": picker,
            "picker_target": PICKER_TARGET,
            "cancel_url": tasks_url(kind),
            "policy_on": task_services.requires_approval(self.request.user.company_id),
            **extra,
        }
        htmx = getattr(self.request, "htmx", None)
        if htmx and htmx.target == PICKER_TARGET:
            return render(self.request, "upgrades/tasks/_device_picker.html", context)
        return render(self.request, self.template_name, context)

    def build(self, data: Any = None) -> tuple[TaskForm, DevicePicker]:
        params = self.params()
        form = TaskForm(data, user=self.request.user, params=params)
        picker = DevicePicker(
            self.request.user,
            form.kind,
            form.model,
            params,
            firmware_type=form.firmware_type,
        )
        return form, picker

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form, picker = self.build()
        return self.render_page(form, picker)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.POST.get("picker") or request.POST.get("refresh"):
            # A picker button or "Apply" of a model change without JavaScript: show again.
            form, picker = self.build()
            return self.render_page(form, picker)
        form, picker = self.build(request.POST)
        if form.is_valid():
            release = FirmwareRelease.objects.filter(pk=form.cleaned_data["release"]).first()
            try:
                task = task_services.create_task(
                    request.user,
                    release=release,
                    devices=sorted(picker.selected),
                    **form.task_options(),
                )
            except ValidationError as error:
                add_errors(form, error, {"reservation_at": "time"})
            else:
                messages.success(request, self.created_message(task, len(picker.selected)))
                return HttpResponseRedirect(reverse("upgrades:task_detail", args=[task.pk]))
        return self.render_page(form, picker)

    @staticmethod
    def created_message(task: Any, count: int) -> str:
        values = {"number": task.pk, "n": count}
        if task.state == TaskState.AWAITING_APPROVAL:
            return (
                _(
                    "Upgrade task %(number)s for %(n)d devices created; it starts once a second "
                    "administrator approves it."
                )
                % values
            )
        if task.state == TaskState.SCHEDULED:
            return (
                _(
                    "Upgrade task %(number)s for %(n)d devices created; it starts at the "
                    "reserved time."
                )
                % values
            )
        return _("Upgrade task %(number)s for %(n)d devices created and started.") % values


__all__ = ["TaskAddView", "add_errors", "kind_of"]
