"""Firmware release (guide §7.1). The upload takes images of up to FIRMWARE_MAX_BYTES
(settings.UPLOAD_LARGE_FILE_URLS, matricloud/uploads.py)."""

from django.urls import path

from upgrades.views.releases import ReleaseDownloadView, ReleaseListView, ReleaseUploadView

urlpatterns = [
    path("releases/", ReleaseListView.as_view(), name="releases"),
    path("releases/upload/", ReleaseUploadView.as_view(), name="release_upload"),
    path("releases/<int:pk>/download/", ReleaseDownloadView.as_view(), name="release_download"),
]
