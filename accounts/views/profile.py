from django.views.generic import TemplateView


class ProfileView(TemplateView):
    template_name = "placeholder.html"


def security(request):
    raise NotImplementedError


class ChangeEmailView(TemplateView):
    pass


class ChangePasswordView(TemplateView):
    pass


class DeregisterView(TemplateView):
    pass
