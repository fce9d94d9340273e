from django.views.generic import TemplateView


class CompanyUsersView(TemplateView):
    pass


class UserAddView(TemplateView):
    pass


class UserEditView(TemplateView):
    pass


class UserRoleView(TemplateView):
    pass


class UserResetPasswordView(TemplateView):
    pass
