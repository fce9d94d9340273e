"""User configuration (guide §3): profile, account security (email, password, deregistration).

Every page here is about the signed-in user only, so there is nothing to scope beyond
request.user.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils import translation
from django.utils.translation import gettext as _
from django.views import View
from django.views.generic import FormView, UpdateView

from accounts import codes, reauth
from accounts.models import CodePurpose, User
from accounts.profile_forms import (
    DeregisterForm,
    NewEmailForm,
    PortalPasswordChangeForm,
    ProfileForm,
    VerifyCurrentEmailForm,
)
from accounts.profile_services import change_email, change_password, update_profile
from accounts.registration import DeregistrationRefused, deregister, linked_assets

EMAIL_CHANGE = "email_change"


def email_change_verified(request: HttpRequest) -> bool:
    """Has the signed-in user verified their current address for an email change, lately?"""
    state = request.session.get(EMAIL_CHANGE) or {}
    return (
        request.user.is_authenticated
        and state.get("user") == request.user.pk
        and state.get("email") == request.user.email
        and time.time() - state.get("verified_at", 0) < settings.VERIFICATION_CODE_TTL_SECONDS
    )


class ConfigurationPageMixin(LoginRequiredMixin):
    """The User configuration layout: sub-navigation Profile / Account security."""

    config_section = "security"

    def get_context_data(self, **kwargs):
        return super().get_context_data(config_section=self.config_section, **kwargs)


class CurrentPasswordFormMixin:
    """For forms that ask for the current password (accounts/reauth.py)."""

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "request": self.request}

    def form_invalid(self, form):
        if reauth.is_locked_out(self.request):
            return locked_out_response()
        return super().form_invalid(form)


def locked_out_response() -> HttpResponse:
    """The user was just locked out and signed out: AxesMiddleware replaces this answer with
    the lockout page, as for a sign-in."""
    return redirect("accounts:login")


class ProfileView(ConfigurationPageMixin, UpdateView):
    """Guide §3.1: avatar, username, currency unit, language and time zone."""

    template_name = "accounts/profile/profile.html"
    form_class = ProfileForm
    config_section = "profile"
    success_url = reverse_lazy("accounts:profile")

    def get_object(self, queryset=None) -> User:
        # A copy: an invalid form must not leak into request.user (shown in the top bar).
        return User.objects.get(pk=self.request.user.pk)

    def form_valid(self, form):
        user = self.request.user
        try:
            update_profile(user, acting_user=user, **form.changes())
        except ValidationError as error:
            form.add_error(None, error)
            return self.form_invalid(form)
        # Language and time zone apply at once, starting with this message.
        translation.activate(user.language)
        messages.success(self.request, _("Your profile has been updated."))
        response = redirect(self.get_success_url())
        response.set_cookie(settings.LANGUAGE_COOKIE_NAME, user.language)
        return response


@login_required
def security(request: HttpRequest) -> HttpResponse:
    """Guide §3.2–3.4: the Account security overview."""
    return render(
        request,
        "accounts/profile/security.html",
        {"config_section": "security", "deregister_blockers": linked_assets(request.user)},
    )


class ChangeEmailView(ConfigurationPageMixin, View):
    """Guide §3.2: verify the current address (and the current password), then enter and
    verify the new one.

    The progress lives in the session: step 2 opens only after the code sent to the current
    address was used, and for VERIFICATION_CODE_TTL_SECONDS.
    """

    template_name = "accounts/profile/change_email.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        if email_change_verified(request):
            return self.render(NewEmailForm(user=request.user))
        return self.render(VerifyCurrentEmailForm(user=request.user, request=request))

    def post(self, request: HttpRequest) -> HttpResponse:
        action = request.POST.get("action")
        if action == "cancel":
            request.session.pop(EMAIL_CHANGE, None)
            return redirect("accounts:security")
        if action == "confirm":
            if not email_change_verified(request):
                messages.warning(
                    request, _("Your verification has expired. Please verify your email again.")
                )
                return redirect("accounts:change_email")
            return self.confirm(request)
        return self.verify_current(request)

    def verify_current(self, request: HttpRequest) -> HttpResponse:
        form = VerifyCurrentEmailForm(request.POST, user=request.user, request=request)
        if not form.is_valid():
            if reauth.is_locked_out(request):
                return locked_out_response()
            return self.render(form)
        try:
            codes.consume(request.user.email, CodePurpose.EMAIL_OLD, form.cleaned_data["code"])
        except codes.CodeError as error:
            form.add_error("code", error.message)
            return self.render(form)
        request.session[EMAIL_CHANGE] = {
            "user": request.user.pk,
            "email": request.user.email,
            "verified_at": time.time(),
        }
        messages.success(request, _("Your current email is verified. Now enter the new one."))
        return redirect("accounts:change_email")

    def confirm(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        form = NewEmailForm(request.POST, user=user)
        if not form.is_valid():
            return self.render(form)
        new_email, code = form.cleaned_data["email"], form.cleaned_data["code"]
        try:
            change_email(user, acting_user=user, new_email=new_email, code=code)
        except codes.CodeError as error:
            form.add_error("code", error.message)
            return self.render(form)
        except ValidationError as error:  # the address was taken meanwhile
            form.add_error(None, error)
            return self.render(form)
        request.session.pop(EMAIL_CHANGE, None)
        messages.success(
            request, _("Your email has been changed to %(email)s.") % {"email": new_email}
        )
        return redirect("accounts:security")

    def render(self, form) -> HttpResponse:
        context = {
            "form": form,
            "config_section": "security",
            "step": 2 if isinstance(form, NewEmailForm) else 1,
            "old_purpose": CodePurpose.EMAIL_OLD,
            "new_purpose": CodePurpose.EMAIL_NEW,
        }
        return render(self.request, self.template_name, context)


class ChangePasswordView(
    CurrentPasswordFormMixin, ConfigurationPageMixin, auth_views.PasswordChangeView
):
    """Guide §3.3: old, new and repeated password; the user stays signed in."""

    template_name = "accounts/profile/change_password.html"
    form_class = PortalPasswordChangeForm
    success_url = reverse_lazy("accounts:security")

    def form_valid(self, form):
        new_password = form.cleaned_data["new_password1"]
        change_password(form.user, acting_user=self.request.user, new_password=new_password)
        update_session_auth_hash(self.request, form.user)  # stay signed in
        messages.success(self.request, _("Your password has been changed."))
        return redirect(self.get_success_url())


class DeregisterView(CurrentPasswordFormMixin, ConfigurationPageMixin, FormView):
    """Guide §3.4: the Account Cancellation Notice, its confirmation and the current password."""

    template_name = "accounts/profile/deregister.html"
    form_class = DeregisterForm

    def get_context_data(self, **kwargs):
        blockers = kwargs.pop("blockers", None)
        if blockers is None:
            blockers = linked_assets(self.request.user)
        return super().get_context_data(blockers=blockers, **kwargs)

    def form_valid(self, form):
        try:
            deregister(self.request.user, acting_user=self.request.user)
        except DeregistrationRefused as refused:
            form.add_error(None, _("Your account cannot be cancelled yet."))
            return self.render_to_response(
                self.get_context_data(form=form, blockers=refused.reasons)
            )
        logout(self.request)
        messages.success(self.request, _("Your account has been cancelled. Goodbye."))
        return redirect("accounts:login")
