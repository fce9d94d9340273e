"""Site → Site list (guide §6.1): search, the table, Create site and each row's Distribute,
Rename and Delete."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from django.contrib import messages
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.generic import TemplateView

from accounts import services as account_services
from accounts.models import User
from accounts.views.generic import (
    ActionRequiredMixin,
    ObjectConfirmView,
    ObjectListView,
    ObjectMixin,
)
from fleet import services
from fleet.filters import SiteFilter
from fleet.site_forms import (
    AccountStepForm,
    DistributeForm,
    GatewayStepForm,
    OwnerSearchForm,
    RenameForm,
    SiteInfoForm,
)
from fleet.tables import SiteTable, annotate_site_rows
from sites.models import Site
from ui.dialogs import back_to, dialog_done, is_dialog_request, render_dialog
from ui.lists import PageByIdsMixin
from ui.query import positive_int

OWNERS_PER_PAGE = 10


def _owner_choices(
    request: HttpRequest, search: OwnerSearchForm, *, field: str, url: str, selected: str = ""
) -> dict[str, Any]:
    """The context of fleet/sites/_owner_choices.html: one page of the owners `search` finds,
    as radio buttons named `field`, paged and searched again through `url`."""
    page = Paginator(search.owners(), OWNERS_PER_PAGE).get_page(
        positive_int(request.GET.get("owner_page"), 1)
    )
    params = {
        "part": "owners",
        "owner_q": search.data.get("owner_q", "") if search.is_bound else "",
        "owner_company": search.data.get("owner_company", "") if search.is_bound else "",
    }
    return {
        "owner_search": search,
        "owner_page": page,
        "owner_field": field,
        "owners_url": url,
        "owner_page_url": f"{url}?{urlencode(params)}&owner_page=",
        "selected_owner": selected,
    }


def _list_url(request: HttpRequest) -> str:
    """Back to the list (with its filters) or the page the dialog was opened from."""
    return back_to(request, reverse("sites:list"))


# --- The list -----------------------------------------------------------------------------------


class SiteListView(PageByIdsMixin, ObjectListView):
    """The sites the user may see: filters (superior account, status, name, user), the
    guide's columns and the chooser, sorting, pages, CSV/XLSX, and the rows' actions."""

    action = "site.view"
    model = Site
    table_class = SiteTable
    filterset_class = SiteFilter
    template_name = "fleet/sites/list.html"
    htmx_target = "site-table"
    paginate_by = 20
    export_filename = "sites"
    empty_icon = "buildings"
    empty_text = gettext_lazy("No sites yet.")
    empty_filtered_text = gettext_lazy("No site matches these filters.")
    reset_label = gettext_lazy("Show all sites")
    create_action = "site.manage"
    create_label = gettext_lazy("Create Site")

    def get_create_url(self) -> str:
        return reverse("sites:create")

    def get_queryset(self) -> QuerySet:
        return super().get_queryset().select_related("company")

    def get_filtered_queryset(self) -> QuerySet:
        return annotate_site_rows(super().get_filtered_queryset(), self.request.user)

    def page_rows(self, ids: list[int], ordered: QuerySet) -> QuerySet:
        sites = Site.objects.filter(pk__in=ids).select_related("company")
        return annotate_site_rows(sites, self.request.user).order_by(*ordered.query.order_by)

    def get_empty_state(self) -> dict[str, Any]:
        empty = super().get_empty_state()
        if not self.is_filtered() and not empty["action_url"]:
            empty["text"] = _("No sites yet. Sites appear here once they are shared with you.")
        return empty

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(next_url=self.request.get_full_path(), **kwargs)


# --- Create site (guide §6.1.2) -----------------------------------------------------------------

STATE_SALT = "fleet.site_create"
STATE_MAX_AGE = 24 * 3600
STEPS = (1, 2, 3)
STEP_FIELDS = {
    1: ("serial_number",),
    2: tuple(SiteInfoForm.base_fields),
    3: ("account_mode", "new_company", "language", "email", "owner"),
}


class SiteCreateView(ActionRequiredMixin, TemplateView):
    """The three-step Create site dialog (gateway, site information, account).

    Each step is one form; Next validates it, Previous goes back without losing what was
    typed. What the steps hold travels in one signed hidden field (`state`: the raw inputs of
    every step, bound to the user), so the server keeps nothing between requests and NOTHING is
    stored before the final Confirm, which validates every step again and creates the site,
    binds the gateway and creates or grants the account in one transaction
    (`services.create_site`). An abandoned dialog leaves no trace.
    """

    action = "site.manage"
    template_name = "fleet/sites/create.html"

    # --- State ----------------------------------------------------------------------------------

    def load_state(self) -> dict[str, dict[str, list[str]]]:
        token = self.request.POST.get("state") or self.request.GET.get("state") or ""
        if not token:
            return {}
        try:
            state = signing.loads(token, salt=STATE_SALT, max_age=STATE_MAX_AGE)
        except signing.BadSignature:
            return {}
        if not isinstance(state, dict) or state.get("user") != self.request.user.pk:
            return {}
        return state.get("steps", {})

    def dump_state(self, steps: dict) -> str:
        return signing.dumps(
            {"user": self.request.user.pk, "steps": steps}, salt=STATE_SALT, compress=True
        )

    @staticmethod
    def step_data(steps: dict, step: int) -> QueryDict | None:
        raw = steps.get(str(step))
        if raw is None:
            return None
        data = QueryDict(mutable=True)
        for key, values in raw.items():
            data.setlist(key, values)
        return data

    @staticmethod
    def raw_of(data: QueryDict, step: int) -> dict[str, list[str]]:
        return {name: data.getlist(name) for name in STEP_FIELDS[step] if name in data}

    # --- Forms ----------------------------------------------------------------------------------

    def make_form(self, step: int, data: QueryDict | None = None, initial: dict | None = None):
        user = self.request.user
        form_class = {1: GatewayStepForm, 2: SiteInfoForm, 3: AccountStepForm}[step]
        kwargs: dict[str, Any] = {"user": user}
        if data is not None:
            kwargs["data"] = data
        if initial:
            kwargs["initial"] = initial
        if step == 2 and data is None and not initial:
            country = str(getattr(user.company, "country", "") or "DE")
            kwargs["initial"] = {"country": country, **SiteInfoForm.defaults_for(country)}
        return form_class(**kwargs)

    def form_for(self, steps: dict, step: int, *, validate: bool = False):
        """The step's form with what was typed before (bound only to show errors)."""
        data = self.step_data(steps, step)
        if data is None:
            return self.make_form(step)
        if validate:
            return self.make_form(step, data=data)
        return self.make_form(step, initial=_initial_from(data))

    # --- Requests -------------------------------------------------------------------------------

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.GET.get("part") == "owners":
            return self.render_owner_choices()
        if request.GET.get("prefill") == "region":
            return self.render_region_prefill()
        return self.render_step(1, {}, self.make_form(1))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        steps = self.load_state()
        step = positive_int(request.POST.get("step"), 1, 3)
        nav = request.POST.get("nav", "next")
        steps[str(step)] = self.raw_of(request.POST, step)
        if nav == "previous":
            previous = max(1, step - 1)
            return self.render_step(previous, steps, self.form_for(steps, previous))
        form = self.make_form(step, data=self.step_data(steps, step))
        if not form.is_valid():
            return self.render_step(step, steps, form)
        if step < 3:
            return self.render_step(step + 1, steps, self.form_for(steps, step + 1))
        return self.confirm(steps)

    def confirm(self, steps: dict) -> HttpResponse:
        """Validate every step again, then create everything in one transaction."""
        forms = {}
        for step in STEPS:
            form = self.make_form(step, data=self.step_data(steps, step) or QueryDict())
            if not form.is_valid():
                return self.render_step(step, steps, form)
            forms[step] = form
        info = forms[2]
        try:
            site = services.create_site(
                acting_user=self.request.user,
                company=info.cleaned_data["company"],
                fields=info.site_fields(),
                gateway=forms[1].cleaned_data["serial_number"] or None,
                **forms[3].service_kwargs(),
            )
        except ValidationError as error:
            return self.render_service_error(steps, forms, error)
        except account_services.PasswordEmailFailed as failed:
            site = getattr(failed, "site", None)
            messages.warning(
                self.request,
                _(
                    "The site was created, but the email to %(email)s could not be sent. "
                    "Please use “Reset password” for this user later."
                )
                % {"email": failed.user.email},
            )
            return dialog_done(
                self.request, site.get_absolute_url() if site else reverse("sites:list")
            )
        messages.success(self.request, self.success_message(site, forms[3]))
        return dialog_done(self.request, site.get_absolute_url())

    def success_message(self, site: Site, account: AccountStepForm) -> str:
        data = account.cleaned_data
        if data["account_mode"] == "new":
            return _(
                "Site “%(site)s” has been created. The account %(email)s has been created and "
                "its temporary password emailed."
            ) % {"site": site.name, "email": data["email"]}
        return _("Site “%(site)s” has been created.") % {"site": site.name}

    def render_service_error(
        self, steps: dict, forms: dict, error: ValidationError
    ) -> HttpResponse:
        """A refusal of the service (e.g. the gateway was bound meanwhile) on its step's field."""
        messages_by_field = error.message_dict if hasattr(error, "error_dict") else {}
        for step in STEPS:
            form = forms[step]
            fields = [name for name in messages_by_field if name in form.fields]
            if fields:
                for name in fields:
                    form.add_error(name, messages_by_field[name])
                return self.render_step(step, steps, form)
        forms[3].add_error(None, error)
        return self.render_step(3, steps, forms[3])

    # --- Rendering ------------------------------------------------------------------------------

    def render_step(self, step: int, steps: dict, form) -> HttpResponse:
        context = self.get_context_data(
            step=step,
            form=form,
            state=self.dump_state(steps),
            step_labels=[
                (1, _("Gateway information")),
                (2, _("Site info")),
                (3, _("Account information")),
            ],
            in_modal=is_dialog_request(self.request),
        )
        if step == 1 and steps.get("1") is None and self.request.method == "GET":
            context["state"] = self.dump_state({})
        gateway_sn = (steps.get("1") or {}).get("serial_number", [""])[0].strip()
        context["gateway_sn"] = gateway_sn
        if step == 3:
            selected = form["owner"].value() if form.is_bound else None
            context.update(
                self.owner_choices(OwnerSearchForm(user=self.request.user), str(selected or ""))
            )
        return render_dialog(self.request, self.template_name, context)

    def render_region_prefill(self) -> HttpResponse:
        """Step 2 again after the region changed: its time zone, currency, temperature unit and
        tariff set to the region's (fleet/regions.py); everything else as typed."""
        steps = self.load_state()
        typed = self.raw_of(self.request.GET, 2)
        initial = _initial_from(self.step_data({"2": typed}, 2))
        initial.update(SiteInfoForm.defaults_for(str(initial.get("country") or "")))
        steps["2"] = typed
        return self.render_step(2, steps, self.make_form(2, initial=initial))

    def owner_choices(self, search: OwnerSearchForm, selected: str = "") -> dict[str, Any]:
        return _owner_choices(
            self.request, search, field="owner", url=reverse("sites:create"), selected=selected
        )

    def render_owner_choices(self) -> HttpResponse:
        search = OwnerSearchForm(self.request.GET, user=self.request.user)
        context = self.owner_choices(search, self.request.GET.get("owner", ""))
        return render(self.request, "fleet/sites/_owner_choices.html", context)


def _initial_from(data: QueryDict) -> dict[str, Any]:
    """Form initial values from raw inputs (single values as strings)."""
    return {key: values[0] if len(values) == 1 else values for key, values in data.lists()}


# --- Row actions (guide §6.1.3) -----------------------------------------------------------------


class SiteActionMixin(ObjectMixin):
    """A dialog on one site of the list: the site within scope (404), `site.manage` (403)."""

    model = Site
    action = "site.manage"

    def get_object_queryset(self) -> QuerySet:
        return super().get_object_queryset().select_related("company")

    def show(self, form: Any, **extra: Any) -> HttpResponse:
        """The dialog with `form` (and `extra` context) about this site."""
        context = self.get_context_data(
            site=self.object,
            form=form,
            in_modal=is_dialog_request(self.request),
            next_url=_list_url(self.request),
            **extra,
        )
        return render_dialog(self.request, self.template_name, context)


class SiteRenameView(SiteActionMixin, TemplateView):
    """Rename: a one-field form in the dialog."""

    template_name = "fleet/sites/rename.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.show(RenameForm(initial={"name": self.object.name}))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = RenameForm(request.POST)
        if form.is_valid():
            old = self.object.name
            try:
                services.rename_site(
                    self.object, form.cleaned_data["name"], acting_user=request.user
                )
            except ValidationError as error:
                form.add_error("name" if hasattr(error, "error_dict") else None, error)
            else:
                messages.success(
                    request,
                    _("Site “%(old)s” has been renamed to “%(new)s”.")
                    % {"old": old, "new": self.object.name},
                )
                return dialog_done(request, _list_url(request))
        return self.show(form)


class SiteDistributeView(SiteActionMixin, TemplateView):
    """Distribute: find an owner account by company or username/email, pick one, Confirm."""

    template_name = "fleet/sites/distribute.html"

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.GET.get("part") == "owners":
            search = OwnerSearchForm(request.GET, user=request.user)
            context = self.owner_choices(search, selected=request.GET.get("user", ""))
            return render(request, "fleet/sites/_owner_choices.html", context)
        return self.show(DistributeForm(acting_user=request.user))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = DistributeForm(request.POST, acting_user=request.user)
        if form.is_valid():
            user: User = form.cleaned_data["user"]
            try:
                services.distribute_site(self.object, user, acting_user=request.user)
            except ValidationError as error:
                form.add_error("user" if hasattr(error, "error_dict") else None, error)
            else:
                messages.success(
                    request,
                    _("Site “%(site)s” has been distributed to %(user)s.")
                    % {"site": self.object.name, "user": user.username},
                )
                return dialog_done(request, _list_url(request))
        return self.show(form)

    def owner_choices(self, search: OwnerSearchForm, selected: str = "") -> dict[str, Any]:
        url = reverse("sites:distribute", args=[self.object.pk])
        return _owner_choices(self.request, search, field="user", url=url, selected=selected)

    def show(self, form: DistributeForm, **extra: Any) -> HttpResponse:
        selected = form["user"].value() if form.is_bound else ""
        search = OwnerSearchForm(user=self.request.user)
        return super().show(form, **self.owner_choices(search, str(selected or "")), **extra)


class SiteDeleteView(SiteActionMixin, ObjectConfirmView):
    """Delete: a confirmation naming the site; refused while gateways are bound."""

    template_name = "fleet/sites/delete.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        next_url = _list_url(self.request)
        return super().get_context_data(
            site=self.object,
            blockers=services.site_delete_blockers(self.object),
            next_url=next_url,
            next_url_quoted=quote(next_url, safe=""),
            **kwargs,
        )

    def perform(self, obj: Site) -> None:
        services.delete_site(obj, acting_user=self.request.user)

    def get_success_message(self) -> str:
        return _("Site “%(name)s” has been deleted.") % {"name": self.object.name}

    def get_success_url(self) -> str:
        return _list_url(self.request)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except services.SiteDeletionRefused as refused:
            messages.error(
                request,
                _("Site “%(name)s” cannot be deleted. %(reasons)s")
                % {"name": self.object.name, "reasons": " ".join(refused.reasons)},
            )
            return HttpResponseRedirect(_list_url(request))


urlpatterns = [
    path("", SiteListView.as_view(), name="list"),
    path("create/", SiteCreateView.as_view(), name="create"),
    path("<int:pk>/rename/", SiteRenameView.as_view(), name="rename"),
    path("<int:pk>/distribute/", SiteDistributeView.as_view(), name="distribute"),
    path("<int:pk>/delete/", SiteDeleteView.as_view(), name="delete"),
]
