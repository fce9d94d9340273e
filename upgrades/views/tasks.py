"""Firmware upgrade (guide §7.2): the task list with its Gateway | Inverter tabs (figure 7-6),
a task's page (Check, §7.2.2), Delete (§7.2.3), Approve / Pause / Resume / Retry failed, and
the company's four-eyes rule. "Add upgrade" is upgrades/views/task_add.py.

Tasks come through `UpgradeTask.objects.visible_to(user)` (a foreign or deleted task is 404);
every change is a service of upgrades/task_services.py.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.generic import TemplateView

from accounts.views.generic import (
    ActionRequiredMixin,
    ObjectConfirmView,
    ObjectListView,
    ObjectMixin,
)
from ui.dialogs import back_to, dialog_done, render_dialog
from ui.forms import StyledFormMixin
from upgrades import task_services
from upgrades.models import DeviceKind, TargetState, TaskState, UpgradeTarget, UpgradeTask
from upgrades.task_forms import TaskFilter, kind_of
from upgrades.task_tables import (
    LIVE_STATES,
    UpgradeTargetTable,
    UpgradeTaskTable,
    action_buttons,
    annotate_statistics,
    reservation_text,
    task_state_pill,
    wave_progress,
)

POLL_INTERVAL = "3s"
SHARED_TABS = "upgrades/_tabs.html"


def section_tabs() -> str:
    """The Upgrade section's sub-navigation, or a plain heading where there is none."""
    try:
        get_template(SHARED_TABS)
    except TemplateDoesNotExist:
        return "upgrades/tasks/_heading.html"
    return SHARED_TABS


def section_context(request: HttpRequest, kind: str) -> dict[str, Any]:
    return {
        "section_tabs": section_tabs(),
        "section": "tasks",
        "kind": kind,
        "kind_label": DeviceKind(kind).label,
        "kind_urls": [
            (value, label, f"{reverse('upgrades:tasks')}?kind={value}", value == kind)
            for value, label in DeviceKind.choices
        ],
    }


def tasks_url(kind: str) -> str:
    return f"{reverse('upgrades:tasks')}?kind={kind}"


# --- The list ------------------------------------------------------------------------------------


class TaskListView(ObjectListView):
    action = "upgrade.manage"
    model = UpgradeTask
    table_class = UpgradeTaskTable
    filterset_class = TaskFilter
    template_name = "upgrades/tasks/list.html"
    htmx_target = "task-table"
    paginate_by = 20
    export_filename = "upgrade-tasks"
    create_action = "upgrade.manage"
    create_label = gettext_lazy("Add upgrade")
    empty_icon = "cloud-arrow-up"
    empty_text = gettext_lazy("No upgrade tasks yet. Add one to upgrade a model's devices.")
    empty_filtered_text = gettext_lazy("No upgrade task matches these filters.")
    reset_label = gettext_lazy("Show all tasks")

    @property
    def kind(self) -> str:
        return kind_of(self.request.GET)

    def get_queryset(self) -> QuerySet:
        tasks = super().get_queryset().filter(deleted_at__isnull=True).select_related("release")
        return annotate_statistics(tasks)

    def is_filtered(self) -> bool:
        return any(self.request.GET.get(name) for name in ("model", "version"))

    def get_create_url(self) -> str:
        return f"{reverse('upgrades:task_add')}?kind={self.kind}"

    def get_poll_interval(self, table: UpgradeTaskTable) -> str:
        states = {row.record.state for row in table.paginated_rows}
        return "5s" if states & {TaskState.RUNNING, TaskState.SCHEDULED} else ""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(section_context(self.request, self.kind))
        company = self.request.user.company if self.request.user.company_id else None
        if task_services.may_set_policy(self.request.user, company):
            context["policy_on"] = task_services.requires_approval(company.pk)
            context["policy_url"] = reverse("upgrades:policy")
        return context


# --- One task ------------------------------------------------------------------------------------


class TargetFilterForm(StyledFormMixin, forms.Form):
    pass


class TargetFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        label=gettext_lazy("Status"),
        choices=TargetState.choices,
        empty_label=gettext_lazy("All status"),
    )

    class Meta:
        model = UpgradeTarget
        fields = ("state",)
        form = TargetFilterForm


class TaskDetailView(ObjectListView):
    """Check (§7.2.2): the task's state, settings and waves, and its devices; the page
    refreshes itself while the task can still move."""

    action = "upgrade.manage"
    model = UpgradeTarget
    table_class = UpgradeTargetTable
    filterset_class = TargetFilter
    template_name = "upgrades/tasks/detail.html"
    htmx_target = "target-table"
    paginate_by = 50
    export_filename = "upgrade-task-devices"
    empty_icon = "cpu"
    empty_text = gettext_lazy("This task has no devices.")
    empty_filtered_text = gettext_lazy("No device of this task is in this state.")
    reset_label = gettext_lazy("Show all devices")

    def get_object(self) -> UpgradeTask:
        tasks = UpgradeTask.objects.visible_to(self.request.user).filter(deleted_at__isnull=True)
        return get_object_or_404(tasks.select_related("release"), pk=self.kwargs["pk"])

    def get_queryset(self) -> QuerySet:
        return (
            super()
            .get_queryset()
            .filter(task=self.object)
            .select_related("gateway__site", "inverter")
        )

    def get_table(self, paginate: bool = True) -> UpgradeTargetTable:
        table = super().get_table(paginate)
        table.release_size = self.object.release.size
        return table

    def get_poll_interval(self, table: UpgradeTargetTable) -> str:
        return POLL_INTERVAL if self.object.state in LIVE_STATES else ""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        task = self.object
        context.update(section_context(self.request, task.kind))
        context.update(
            task=task,
            task_state=task_state_pill(task),
            task_actions=action_buttons(self.request, task, small=False),
            reservation=reservation_text(task),
            waves=wave_progress(task),
            live=task.state in LIVE_STATES,
            poll_interval_summary=POLL_INTERVAL if task.state in LIVE_STATES else "",
            back_url=tasks_url(task.kind),
        )
        return context


# --- Delete ---------------------------------------------------------------------------------------


class TaskDeleteView(ObjectConfirmView):
    """Delete (§7.2.3): the devices that have not started are cancelled; those being upgraded
    finish and report; the task leaves the list."""

    model = UpgradeTask
    action = "upgrade.manage"
    template_name = "upgrades/tasks/delete.html"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().filter(deleted_at__isnull=True)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        task = self.object
        return super().get_context_data(
            task=task,
            in_flight=task.targets.exclude(
                state__in=[*task_services.NOT_STARTED, *task_services.FINISHED]
            ).count(),
            cancel_url=tasks_url(task.kind),
            **kwargs,
        )

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        task = self.object
        try:
            cancelled, running = task_services.cancel_task(request.user, task, delete=True)
        except ValidationError as error:
            return self.render_to_response(self.get_context_data(error=" ".join(error.messages)))
        text = ngettext(
            "Task %(number)s deleted. Cancelled %(n)d device",
            "Task %(number)s deleted. Cancelled %(n)d devices",
            cancelled,
        ) % {"number": task.pk, "n": cancelled}
        if running:
            text += "; " + ngettext(
                "%(m)d was already being upgraded and will finish.",
                "%(m)d were already being upgraded and will finish.",
                running,
            ) % {"m": running}
        else:
            text += "."
        messages.success(request, text)
        return dialog_done(request, back_to(request, tasks_url(task.kind)))


# --- Approve, Pause, Resume, Retry failed ---------------------------------------------------------

ACTIONS = {
    "approve": "upgrade.approve",
    "pause": "upgrade.manage",
    "resume": "upgrade.manage",
    "retry": "upgrade.manage",
}


class TaskActionView(ObjectMixin, TemplateView):
    """One of the task's buttons (POST only); back to the page it was pressed on."""

    model = UpgradeTask
    http_method_names = ["post"]

    def get_action(self) -> str:
        return ACTIONS.get(self.kwargs["action"], "upgrade.manage")

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().filter(deleted_at__isnull=True)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        task, action = self.object, self.kwargs["action"]
        user = request.user
        try:
            if action == "approve":
                task_services.approve_task(user, task)
                text = _("Task %(number)s approved: it is %(state)s.")
            elif action == "pause":
                task_services.pause_task(user, task)
                text = _("Task %(number)s paused: devices being upgraded finish, no other starts.")
            elif action == "resume":
                task_services.resume_task(user, task)
                text = _("Task %(number)s resumed.")
            else:
                count = task_services.retry_failed(user, task)
                text = ngettext(
                    "Task %(number)s: %(count)d failed device will be tried again.",
                    "Task %(number)s: %(count)d failed devices will be tried again.",
                    count,
                )
        except ValidationError as error:
            messages.error(request, " ".join(error.messages))
        else:
            values = {"number": task.pk, "state": task.get_state_display().lower()}
            if action == "retry":
                values["count"] = count
            messages.success(request, text % values)
        detail = reverse("upgrades:task_detail", args=[task.pk])
        if request.POST.get("next"):
            return HttpResponseRedirect(back_to(request, reverse("upgrades:tasks")))
        return HttpResponseRedirect(detail)


# --- The company's four-eyes rule -----------------------------------------------------------------


class PolicyForm(StyledFormMixin, forms.Form):
    require_approval = forms.TypedChoiceField(
        label=gettext_lazy("A second administrator approves each new task"),
        choices=[("yes", gettext_lazy("Yes")), ("no", gettext_lazy("No"))],
        coerce=lambda value: value == "yes",
        widget=forms.RadioSelect,
    )


class PolicyView(ActionRequiredMixin, TemplateView):
    """An administrator switches four-eyes approval on or off for their company."""

    action = "upgrade.approve"
    template_name = "upgrades/tasks/policy.html"

    def show(self, form: PolicyForm) -> HttpResponse:
        context = {"form": form, "company": self.request.user.company, "next_url": self.back()}
        return render_dialog(self.request, self.template_name, context)

    def back(self) -> str:
        return back_to(self.request, reverse("upgrades:tasks"))

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        on = task_services.requires_approval(request.user.company_id)
        return self.show(PolicyForm(initial={"require_approval": "yes" if on else "no"}))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = PolicyForm(request.POST)
        if form.is_valid():
            on = form.cleaned_data["require_approval"]
            task_services.set_policy(request.user, request.user.company, on)
            text = (
                _("New upgrade tasks of %(company)s now wait for a second administrator.")
                if on
                else _("New upgrade tasks of %(company)s start without approval.")
            )
            messages.success(request, text % {"company": request.user.company.name})
            return dialog_done(request, self.back())
        return self.show(form)
