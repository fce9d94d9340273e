"""Account → User management (guide §5.2): the users of a company, add, edit, select role,
reset password."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import services, throttle
from accounts.models import Company, User
from accounts.permissions import can
from accounts.tables import UserTable
from accounts.user_forms import UserAddForm, UserEditForm, UserRoleForm, UserSearchForm
from accounts.views.companies import COMPANY_TABS, company_page_context
from accounts.views.generic import (
    ObjectConfirmView,
    ObjectFormView,
    ObjectListView,
    Tab,
    TabMixin,
    htmx_partial,
)

# The tabs of a user's page (guide §5.2.2): "Select role" only where the role may be changed.
USER_TABS = (
    Tab("basic", gettext_lazy("Basic information"), "accounts:user_edit", "user.change"),
    Tab("role", gettext_lazy("Select role"), "accounts:user_role", "user.change_role"),
)


def users_url(user: User) -> str:
    """The user management tab of the user's company (the company list for company-less
    platform staff)."""
    if user.company_id:
        return reverse("accounts:company_users", args=[user.company_id])
    return reverse("accounts:company_list")


class CompanyUsersView(TabMixin, ObjectListView):
    """Tab "User management": the users of one company, searchable, sortable, paginated, with
    the user's columns and downloads."""

    tabs = COMPANY_TABS
    tab = "users"
    model = User
    table_class = UserTable
    search_fields = ("username", "email", "description")
    search_form_class = UserSearchForm
    template_name = "accounts/users/list.html"
    htmx_target = "user-table"
    paginate_by = 20
    empty_icon = "people"
    empty_text = gettext_lazy("This company has no users yet.")
    empty_search_text = gettext_lazy("No user matches “%(query)s”.")
    reset_label = gettext_lazy("Show all users")
    create_action = "user.add"
    create_label = gettext_lazy("Add User")
    compact_actions = True

    def get_object(self) -> Company:
        return get_object_or_404(
            Company.objects.visible_to(self.request.user), pk=self.kwargs["pk"]
        )

    def get_create_url(self) -> str:
        return reverse("accounts:user_add", args=[self.object.pk])

    def get_export_filename(self) -> str:
        day = timezone.localdate().strftime("%Y%m%d")
        return f"users-{slugify(self.object.name) or self.object.pk}-{day}"

    def get_queryset(self):
        return super().get_queryset().filter(company=self.object).select_related("supervisor")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # The table or the tab's panel only: the header stays as it is.
        header = not (htmx_partial(self.request, self.htmx_target) or self.tab_partial())
        return super().get_context_data(
            **company_page_context(self.request, self.object, header=header), **kwargs
        )


class UserAddView(ObjectFormView):
    """Add a user to a company: basic information, then the role (guide §5.2.1)."""

    model = Company
    action = "user.add"
    form_class = UserAddForm
    template_name = "accounts/users/add.html"
    email_failed = False

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user, "company": self.object}

    def save(self, form: UserAddForm) -> User:
        data = form.service_kwargs()
        ticket = throttle.Ticket()
        if data["password"] is None:  # the temporary password is emailed
            ticket = throttle.take_mail(self.request, data["email"], scope=throttle.STAFF)
        try:
            return services.create_user(acting_user=self.request.user, **data)
        except services.PasswordEmailFailed as failed:
            self.email_failed = True
            messages.warning(self.request, _email_failed_message(failed.user))
            return failed.user
        except Exception:  # nothing was emailed
            ticket.refund()
            raise

    def get_success_message(self) -> str:
        user = self.result
        if user.password_is_temporary and not self.email_failed:
            return _(
                "User “%(name)s” has been added. A temporary password has been emailed to "
                "%(email)s."
            ) % {"name": user, "email": user.email}
        return _("User “%(name)s” has been added.") % {"name": user}

    def get_success_url(self) -> str:
        return reverse("accounts:company_users", args=[self.object.pk])

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(company=self.object, **kwargs)


class UserEditView(TabMixin, ObjectFormView):
    """Tab "Basic information": edit a user's basic information (guide §5.2.2)."""

    model = User
    tabs = USER_TABS
    tab = "basic"
    form_class = UserEditForm
    template_name = "accounts/users/edit.html"
    success_message = gettext_lazy("User “%(object)s” has been saved.")

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user, "target": self.object}

    def save(self, form: UserEditForm) -> User:
        return services.update_user(self.object, acting_user=self.request.user, **form.cleaned_data)

    def get_success_url(self) -> str:
        return users_url(self.object)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            **user_page_context(self.request.user, self.object), **kwargs
        )


class UserRoleView(TabMixin, ObjectFormView):
    """Tab "Select role" (guide §5.2.2): administrators only, never one's own role."""

    model = User
    tabs = USER_TABS
    tab = "role"
    form_class = UserRoleForm
    template_name = "accounts/users/role.html"

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "user": self.request.user, "target": self.object}

    def save(self, form: UserRoleForm) -> User:
        return services.change_role(
            self.object, acting_user=self.request.user, role=form.cleaned_data["role"]
        )

    def get_success_message(self) -> str:
        return _("“%(name)s” is now %(role)s.") % {
            "name": self.result,
            "role": self.result.get_role_display(),
        }

    def get_success_url(self) -> str:
        return users_url(self.object)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            **user_page_context(self.request.user, self.object), **kwargs
        )


class UserResetPasswordView(ObjectConfirmView):
    """Email a user a new temporary password (guide §5.2.3); not for one's own account."""

    model = User
    action = "user.reset_password"
    template_name = "accounts/users/reset_password.html"

    def perform(self, obj: User) -> None:
        throttle.take_mail(self.request, obj.email, scope=throttle.STAFF)
        try:
            services.reset_user_password(obj, acting_user=self.request.user)
        except services.PasswordEmailFailed as failed:
            messages.warning(self.request, _email_failed_message(failed.user))
        else:
            messages.success(
                self.request,
                _("A new temporary password has been emailed to %(email)s.") % {"email": obj.email},
            )

    def get_success_url(self) -> str:
        return users_url(self.object)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(target=self.object, **kwargs)


def user_page_context(actor: User, target: User) -> dict[str, Any]:
    """What the header of a user's page shows (its tabs come from USER_TABS)."""
    return {
        "target": target,
        "company": target.company,
        "can_reset_password": can(actor, "user.reset_password", target),
    }


def _email_failed_message(user: User) -> str:
    return _(
        "The change was saved, but the email to %(email)s could not be sent. Please try "
        "“Reset password” again later."
    ) % {"email": user.email}
