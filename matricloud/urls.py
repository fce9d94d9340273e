from django.contrib import admin
from django.urls import include, path

from matricloud import files, views

urlpatterns = [
    path("", include("fleet.urls")),
    path("account/", include("accounts.urls")),
    path("maintenance/", include("maintenance.urls")),
    path("upgrade/", include("upgrades.urls")),
    path("", include((views.placeholder_patterns, "placeholder"))),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", views.healthz, name="healthz"),
    path("django-admin/", admin.site.urls),
    # Uploaded files, by the object they belong to and only to who may see it; raw media
    # paths are not served at all.
    path("files/", include((files.urlpatterns, "files"))),
]
