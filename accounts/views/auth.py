"""Sign in and out, registration, the "Send" button of verification codes, forgotten password,
and the new password after a temporary one (guide §2)."""

from __future__ import annotations

from axes.utils import reset as reset_axes_attempts
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from django.views.generic import FormView

from accounts import codes, throttle
from accounts.auth_forms import (
    AccountTypeForm,
    EmailAuthenticationForm,
    ForgotPasswordForm,
    NewPasswordForm,
    RegistrationForm,
    SendCodeForm,
)
from accounts.models import CodePurpose, CompanyType, User
from accounts.registration import SELF_REGISTERING_TYPES, email_is_registered
from accounts.views.profile import email_change_verified

MUST_SET_PASSWORD = "must_set_password"


class SignedOutOnlyMixin:
    """Pages for visitors: a signed-in user goes home instead."""

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            return redirect("home")
        return super().dispatch(request, *args, **kwargs)


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        if user.password_is_temporary:
            # A temporary password works once: from now on only a password of the user's own.
            user.set_unusable_password()
            user.save(update_fields=["password"])
            update_session_auth_hash(self.request, user)
            self.request.session[MUST_SET_PASSWORD] = True
            messages.info(
                self.request,
                _("You signed in with a temporary password. Please choose your own password."),
            )
            return redirect("accounts:set_password")
        return response


class LogoutView(auth_views.LogoutView):
    """POST only (Django's LogoutView answers 405 to GET)."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        messages.info(request, _("You have been signed out."))
        return response


def choose_account_type(request: HttpRequest) -> HttpResponse:
    """Registration step 1: distributor, installer or owner account."""
    if request.user.is_authenticated:
        return redirect("home")
    data = request.POST if request.method == "POST" else None
    form = AccountTypeForm(data, initial={"account_type": request.GET.get("type")})
    if request.method == "POST" and form.is_valid():
        return redirect("accounts:register_form", form.cleaned_data["account_type"])
    return render(
        request,
        "accounts/auth/choose_account_type.html",
        {"form": form, "account_types": _account_type_cards()},
    )


class RegisterView(SignedOutOnlyMixin, FormView):
    """Registration step 2: guide Table 2-1."""

    template_name = "accounts/auth/register.html"
    form_class = RegistrationForm

    def setup(self, request, *args, **kwargs):
        super().setup(request, *args, **kwargs)
        if kwargs["account_type"] not in SELF_REGISTERING_TYPES:
            raise Http404
        self.account_type = kwargs["account_type"]

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "account_type": self.account_type}

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            account_type=CompanyType(self.account_type), code_purpose=CodePurpose.REGISTER, **kwargs
        )

    def form_valid(self, form):
        try:
            form.save()
        except ValidationError as error:
            form.add_error(None, error)
            return self.form_invalid(form)
        except codes.CodeError as error:
            form.add_error("code", error.message)
            return self.form_invalid(form)
        messages.success(
            self.request,
            _("Your account has been registered. Sign in with your email and password."),
        )
        return redirect("accounts:login")


class ForgotPasswordView(SignedOutOnlyMixin, FormView):
    """Guide §2.3.2, self-service password reset."""

    template_name = "accounts/auth/forgot_password.html"
    form_class = ForgotPasswordForm

    def get_context_data(self, **kwargs):
        return super().get_context_data(code_purpose=CodePurpose.RESET_PASSWORD, **kwargs)

    def form_valid(self, form):
        try:
            user = form.save()
        except codes.CodeError as error:
            form.add_error("code", error.message)
            return self.form_invalid(form)
        if user is not None:
            # Proven by the emailed code: lift a lockout from earlier wrong passwords.
            reset_axes_attempts(username=user.email)
        messages.success(
            self.request, _("Your password has been reset. Sign in with your new password.")
        )
        return redirect("accounts:login")


class SetPasswordView(LoginRequiredMixin, FormView):
    """Choose a password right after signing in with a temporary one (no old password)."""

    template_name = "accounts/auth/set_password.html"
    form_class = NewPasswordForm

    def dispatch(self, request, *args, **kwargs):
        if request.user.is_authenticated and not request.session.get(MUST_SET_PASSWORD):
            # Everybody else changes their password with the old one (User configuration).
            return redirect("accounts:change_password")
        return super().dispatch(request, *args, **kwargs)

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "user": self.request.user}

    def form_valid(self, form):
        user = form.save()
        update_session_auth_hash(self.request, user)
        self.request.session.pop(MUST_SET_PASSWORD, None)
        messages.success(self.request, _("Your password has been set."))
        return redirect("home")


class BadCodeRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@require_POST
def send_code(request: HttpRequest) -> HttpResponse:
    """The "Send" button: email a verification code and answer with a one-line partial.

    200 sent, 400 bad input, 403 not signed in (email change), 429 too soon or too often
    (with Retry-After; see accounts.throttle), 503 the mail server refused.
    """
    form = SendCodeForm(request.POST)
    if not form.is_valid():
        if "purpose" in form.errors:
            return _code_status(request, _("Unknown verification code request."), status=400)
        return _code_status(request, _("Please enter a valid email address."), status=400)
    purpose = form.cleaned_data["purpose"]
    try:
        email, user, deliver = _code_recipient(request, purpose, form.cleaned_data["email"])
        ticket = throttle.take_mail(request, email)
        try:
            codes.issue_code(email, purpose, user=user, deliver=deliver)
        except codes.CodeError:
            ticket.refund()
            raise
    except BadCodeRequest as error:
        return _code_status(request, error.message, status=error.status)
    except (codes.CodeRateLimited, throttle.MailRateLimited) as error:
        response = _code_status(request, error.message, status=429, wait=error.wait_seconds)
        response["Retry-After"] = str(error.wait_seconds)
        return response
    except codes.CodeDeliveryFailed as error:
        return _code_status(request, error.message, status=503)
    if purpose == CodePurpose.RESET_PASSWORD:
        message = _("If an account exists for %(email)s, a code has been sent to it.")
    else:
        message = _("Code sent to %(email)s. Please check your inbox.")
    return _code_status(request, message % {"email": email}, sent=True)


def _code_recipient(
    request: HttpRequest, purpose: str, email: str
) -> tuple[str, User | None, bool]:
    """Where the code of `purpose` goes: (email, user, deliver). Raises BadCodeRequest."""
    if purpose in (CodePurpose.EMAIL_OLD, CodePurpose.EMAIL_NEW):
        if not request.user.is_authenticated:
            raise BadCodeRequest(_("Please sign in again."), status=403)
        if purpose == CodePurpose.EMAIL_OLD:
            return request.user.email, request.user, True
        if not email_change_verified(request):
            raise BadCodeRequest(_("Please verify your current email address first."))
    if not email:
        raise BadCodeRequest(_("Please enter your email address first."))
    if purpose == CodePurpose.EMAIL_NEW:
        if email == request.user.email:
            raise BadCodeRequest(_("This is already your email address."))
        if email_is_registered(email):
            raise BadCodeRequest(_("Another account already uses this email address."))
        return email, request.user, True
    if purpose == CodePurpose.REGISTER:
        # The same answer whether or not the address has an account: its owner gets a notice
        # instead of a code (codes.issue_code), so "Send" does not tell who is registered.
        owner = User.objects.filter(email=email).first()
        return email, owner, owner is None
    # Forgotten password: an unknown address gets a decoy code that nobody receives, so the
    # answer, the limits and the checks are the same whether or not the account exists.
    user = User.objects.filter(email=email, is_active=True).first()
    return email, user, user is not None


def _code_status(
    request: HttpRequest, message: str, *, status: int = 200, sent: bool = False, wait: int = 0
) -> HttpResponse:
    """The one-line answer below the code field; `wait` seconds disable "Send" meanwhile."""
    context = {
        "message": message,
        "sent": sent,
        "wait": settings.VERIFICATION_CODE_RESEND_SECONDS if sent else wait,
    }
    return render(request, "accounts/auth/_code_status.html", context, status=status)


def _account_type_cards() -> list[dict]:
    return [
        {
            "value": CompanyType.DISTRIBUTOR,
            "label": _("Distributor account"),
            "icon": "truck",
            "text": _("You sell inverters to installers and manage their companies and sites."),
        },
        {
            "value": CompanyType.INSTALLER,
            "label": _("Installer account"),
            "icon": "tools",
            "text": _("You install and commission systems and look after your customers' sites."),
        },
        {
            "value": CompanyType.OWNER,
            "label": _("Owner account"),
            "icon": "house-heart",
            "text": _("You own a system and want to follow its yield, storage and alarms."),
        },
    ]
