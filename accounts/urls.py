from django.urls import path

from accounts.views import activity, auth, companies, profile, users

app_name = "accounts"

urlpatterns = [
    # Sign in, registration, forgotten password (guide §2)
    path("login/", auth.LoginView.as_view(), name="login"),
    path("logout/", auth.LogoutView.as_view(), name="logout"),
    path("register/", auth.choose_account_type, name="register"),
    path("register/<str:account_type>/", auth.RegisterView.as_view(), name="register_form"),
    path("codes/send/", auth.send_code, name="send_code"),
    path("password/forgot/", auth.ForgotPasswordView.as_view(), name="forgot_password"),
    path("password/set/", auth.SetPasswordView.as_view(), name="set_password"),
    # User configuration (guide §3)
    path("me/", profile.ProfileView.as_view(), name="profile"),
    path("me/security/", profile.security, name="security"),
    path("me/email/", profile.ChangeEmailView.as_view(), name="change_email"),
    path("me/password/", profile.ChangePasswordView.as_view(), name="change_password"),
    path("me/deregister/", profile.DeregisterView.as_view(), name="deregister"),
    # Account -> Company (guide §5.1)
    path("companies/", companies.CompanyListView.as_view(), name="company_list"),
    path("companies/add/", companies.CompanyAddView.as_view(), name="company_add"),
    path("companies/<int:pk>/", companies.CompanyDetailView.as_view(), name="company_detail"),
    path(
        "companies/<int:pk>/delete/", companies.CompanyDeleteView.as_view(), name="company_delete"
    ),
    # Account -> User management (guide §5.2)
    path("companies/<int:pk>/users/", users.CompanyUsersView.as_view(), name="company_users"),
    path("companies/<int:pk>/users/add/", users.UserAddView.as_view(), name="user_add"),
    path("users/<int:pk>/edit/", users.UserEditView.as_view(), name="user_edit"),
    path("users/<int:pk>/role/", users.UserRoleView.as_view(), name="user_role"),
    path(
        "users/<int:pk>/reset-password/",
        users.UserResetPasswordView.as_view(),
        name="user_reset_password",
    ),
    # Account -> Activity log: audited account changes (administrators)
    path("activity/", activity.ActivityLogView.as_view(), name="activity_log"),
]
