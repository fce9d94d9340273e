"""Account → Company (guide §5.1): the company tree, add, view and edit, delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import services
from accounts.company_forms import CompanyAddForm, CompanyEditForm, CompanySearchForm
from accounts.models import PATH_SEGMENT_WIDTH, Company, User
from accounts.permissions import can
from accounts.scoping import is_visible
from accounts.tables import CompanyTable
from accounts.views.generic import (
    ObjectConfirmView,
    ObjectFormView,
    ObjectListView,
    ServiceFormView,
    Tab,
    TabMixin,
)

# The tabs of a company page (guide §5.1, §5.2); each is its own view and URL.
COMPANY_TABS = (
    Tab(
        "info",
        gettext_lazy("Company information"),
        "accounts:company_detail",
        "company.view",
        icon="info-circle",
    ),
    Tab(
        "users",
        gettext_lazy("User management"),
        "accounts:company_users",
        "user.view",
        icon="people",
    ),
)


@dataclass
class TreeNode:
    company: Company
    matched: bool = False
    children: list[TreeNode] = field(default_factory=list)


def annotate_counts(companies: QuerySet, user: User) -> QuerySet:
    """Add `user_count` and `subordinate_count` in the same query (no query per node)."""

    def count_of(queryset: QuerySet, link: str) -> Coalesce:
        counted = (
            queryset.filter(**{link: OuterRef("pk")})
            .order_by()
            .values(link)
            .annotate(n=Count("pk"))
            .values("n")
        )
        return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))

    return companies.annotate(
        user_count=count_of(User.objects.visible_to(user), "company"),
        subordinate_count=count_of(Company.objects.visible_to(user), "superior"),
    )


def company_tree(user: User, query: str = "") -> list[TreeNode]:
    """The companies `user` may see, nested; with a query, the matches and their ancestors.

    Ancestor ids are read off the matches' materialised paths, so a search is two queries and
    the full tree one, whatever its size.
    """
    visible = Company.objects.visible_to(user)
    matched_ids: set[int] = set()
    if query:
        paths = visible.filter(name__icontains=query).values_list("pk", "path")
        keep: set[int] = set()
        for pk, path in paths:
            matched_ids.add(pk)
            keep.update(int(path[i : i + PATH_SEGMENT_WIDTH]) for i in _segments(path))
        if not keep:
            return []
        visible = visible.filter(pk__in=keep)
    companies = annotate_counts(visible.order_by("path"), user)
    nodes: dict[int, TreeNode] = {}
    roots: list[TreeNode] = []
    for company in companies:  # ordered by path: every parent comes before its children
        node = TreeNode(company, matched=company.pk in matched_ids)
        nodes[company.pk] = node
        parent = nodes.get(company.superior_id)
        (parent.children if parent else roots).append(node)
    return roots


def _segments(path: str) -> range:
    return range(0, len(path), PATH_SEGMENT_WIDTH + 1)


class CompanyListView(ObjectListView):
    """The company tree with a name search (guide §5, figure 5-1). Each company shows the
    columns the user chose; Download lists the companies the search matches, in tree order."""

    action = "company.view"
    model = Company
    table_class = CompanyTable
    search_form_class = CompanySearchForm
    search_fields = ("name",)
    template_name = "accounts/companies/list.html"
    partial_name = "tree"
    htmx_target = "company-tree"
    paginate_by = None
    empty_icon = "building"
    empty_text = gettext_lazy("There are no companies yet.")
    empty_search_text = gettext_lazy("No company matches “%(query)s”.")
    reset_label = gettext_lazy("Show all companies")
    create_action = "company.add"
    create_label = gettext_lazy("Add Company")
    create_url = reverse_lazy("accounts:company_add")
    export_filename = "companies"

    def get_queryset(self) -> QuerySet:
        visible = super().get_queryset().select_related("superior").order_by("path")
        return annotate_counts(visible, self.request.user)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # A search the form refuses (a null byte, too long) shows its error and no companies.
        query = self.search_query()
        nodes = [] if self.search_refused() else company_tree(self.request.user, query)
        return super().get_context_data(
            nodes=nodes,
            can_add=self.can_create(),
            can_view_activity=self.permits(self.request.user, "audit.view"),
            **kwargs,
        )


class CompanyAddView(ServiceFormView):
    """Add a distributor or installer (guide §5.1.1)."""

    action = "company.add"
    form_class = CompanyAddForm
    template_name = "accounts/companies/add.html"
    success_message = gettext_lazy("Company “%(object)s” has been added.")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user}

    def save(self, form: CompanyAddForm) -> Company:
        data = form.cleaned_data
        return services.create_company(
            acting_user=self.request.user,
            company_type=data["type"],
            superior=data["superior"],
            name=data["name"],
            country=data["country"],
            description=data["description"],
        )

    def get_success_url(self) -> str:
        return self.result.get_absolute_url()


class CompanyDetailView(TabMixin, ObjectFormView):
    """Tab "Company information": the details, and the edit form (guide §5.1.2)."""

    model = Company
    tabs = COMPANY_TABS
    tab = "info"
    post_action = "company.change"
    form_class = CompanyEditForm
    template_name = "accounts/companies/detail.html"
    success_message = gettext_lazy("Company “%(object)s” has been saved.")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "company": self.object}

    def save(self, form: CompanyEditForm) -> Company:
        return services.update_company(self.object, acting_user=self.request.user, **form.changes())

    def get_success_url(self) -> str:
        return self.object.get_absolute_url()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        superior = self.object.superior
        return super().get_context_data(
            **company_page_context(self.request, self.object, header=not self.tab_partial()),
            superior=superior,
            superior_visible=superior is not None and is_visible(self.request.user, superior),
            can_change=can(self.request.user, "company.change", self.object),
            **kwargs,
        )


def company_page_context(
    request: HttpRequest, company: Company, *, header: bool = True
) -> dict[str, Any]:
    """What the header of every company page shows; only the company when htmx swaps a part
    of the page (a tab's panel, the user table) and the header stays."""
    if not header:
        return {"company": company}
    user = request.user
    can_delete = can(user, "company.delete", company)
    counted = annotate_counts(Company.objects.visible_to(user).filter(pk=company.pk), user).get()
    return {
        "company": company,
        "user_count": counted.user_count,
        "subordinate_count": counted.subordinate_count,
        "can_delete": can_delete,
        "delete_blockers": services.company_delete_blockers(company) if can_delete else [],
    }


class CompanyDeleteView(ObjectConfirmView):
    """Delete a company, administrators only (guide §5.1.3); refused while it is not empty."""

    model = Company
    action = "company.delete"
    template_name = "accounts/companies/delete.html"
    success_message = gettext_lazy("Company “%(object)s” has been deleted.")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            company=self.object,
            blockers=services.company_delete_blockers(self.object),
            **kwargs,
        )

    def perform(self, obj: Company) -> None:
        services.delete_company(obj, acting_user=self.request.user)

    def get_success_url(self) -> str:
        return reverse("accounts:company_list")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().post(request, *args, **kwargs)
        except services.CompanyDeletionRefused as refused:
            messages.error(
                request,
                _("Company “%(name)s” cannot be deleted. %(reasons)s")
                % {"name": self.object, "reasons": " ".join(refused.reasons)},
            )
            return HttpResponseRedirect(self.object.get_absolute_url())
