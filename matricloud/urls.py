from django.contrib import admin
from django.urls import include, path

from matricloud import views

urlpatterns = [
    path("", views.home, name="home"),
    path("account/", include("accounts.urls")),
    path("maintenance/", include("gateways.maintenance_urls")),
    path("", include((views.placeholder_patterns, "placeholder"))),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", views.healthz, name="healthz"),
    path("django-admin/", admin.site.urls),
    path("media/<path:path>", views.protected_media, name="media"),
]
