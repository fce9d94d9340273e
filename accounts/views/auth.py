"""Placeholder: sign-in, registration and password recovery views are being written."""

from django.contrib.auth import views as auth_views
from django.views.generic import TemplateView


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


def choose_account_type(request):
    raise NotImplementedError


def send_code(request):
    raise NotImplementedError


class RegisterView(TemplateView):
    pass


class ForgotPasswordView(TemplateView):
    pass


class SetPasswordView(TemplateView):
    pass
