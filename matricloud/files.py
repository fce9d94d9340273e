"""Stored files are served here, and only here, after the same visibility check as their pages.

A file is addressed by the object it belongs to, never by its storage path:
/files/avatar/<user>/, /files/logo/<company>/, /files/site-picture/<site>/. Each kind of file
names its model field and the scoped queryset that decides who may see it, so a file is visible
exactly when its object is, and a foreign or missing object answers 404 like every page does.
Models give the address through a `*_url` property (accounts.stored_files.stored_file_url).

The bytes go out through the web server when MEDIA_X_ACCEL_REDIRECT_PREFIX names an nginx
`internal` location that maps to MEDIA_ROOT (X-Accel-Redirect), through FileResponse otherwise.
Firmware images and exports become kinds here when they arrive. Commissioning reports are
served by their own view (fleet/views/commissioning.py): who gets one depends on a role
(`site.manage`), not only on seeing the site; it sends the bytes the same two ways.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path
from django.views.decorators.http import require_safe

from accounts.models import Company, User
from sites.models import Site

# What we store (accounts.stored_files re-encodes every image to one of these); any other
# extension is sent as a download of unknown type, never shown inline.
CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
# The URL carries a version of the file (?v=…), so a browser may keep it; only the browser
# (private), because the answer depends on who asks.
CACHE_CONTROL = "private, max-age=86400"
# Should a stored file ever be something a browser would run (HTML, SVG), it runs nothing.
CONTENT_SECURITY_POLICY = "default-src 'none'; sandbox"


@dataclass(frozen=True)
class FileKind:
    field: str
    visible_to: Callable[[User], QuerySet]


def _users_seen_by(user: User) -> QuerySet:
    """A user's avatar: for themself and for whoever sees them (their company's subtree)."""
    return User.objects.visible_to(user) | User.objects.filter(pk=user.pk)


AVATAR = FileKind("avatar", _users_seen_by)
# Everyone who sees the company, which includes its own users (owners see their company).
LOGO = FileKind("logo", lambda user: Company.objects.visible_to(user))
# Owners: only the sites granted to them.
SITE_PICTURE = FileKind("picture", lambda user: Site.objects.visible_to(user))


@require_safe
@login_required
def stored_file(request: HttpRequest, pk: int, *, kind: FileKind) -> HttpResponse:
    owner = get_object_or_404(kind.visible_to(request.user), pk=pk)
    file = getattr(owner, kind.field)
    if not file:
        raise Http404
    return file_response(file)


def file_response(file: FieldFile) -> HttpResponse:
    content_type = CONTENT_TYPES.get(PurePosixPath(file.name).suffix.lower())
    prefix = settings.MEDIA_X_ACCEL_REDIRECT_PREFIX
    if prefix:
        response = HttpResponse(content_type=content_type or "application/octet-stream")
        response["X-Accel-Redirect"] = f"{prefix.rstrip('/')}/{quote(file.name)}"
    else:
        try:
            handle = file.storage.open(file.name, "rb")
        except FileNotFoundError:
            raise Http404 from None
        response = FileResponse(handle, content_type=content_type or "application/octet-stream")
    response["Content-Disposition"] = "inline" if content_type else "attachment"
    response["Cache-Control"] = CACHE_CONTROL
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response["X-Content-Type-Options"] = "nosniff"
    response["Vary"] = "Cookie"
    return response


urlpatterns = [
    path("avatar/<int:pk>/", stored_file, {"kind": AVATAR}, name="avatar"),
    path("logo/<int:pk>/", stored_file, {"kind": LOGO}, name="logo"),
    path("site-picture/<int:pk>/", stored_file, {"kind": SITE_PICTURE}, name="site_picture"),
]
