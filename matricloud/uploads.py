"""Size limits on request bodies and uploaded files, enforced while the body comes in.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE leaves files out, and FILE_UPLOAD_MAX_MEMORY_SIZE only
chooses between memory and a temporary file, so without these a 30 MB "avatar" is read and
stored whole before the form refuses it.

- `RequestSizeLimitMiddleware` answers 413 when the declared Content-Length is above
  UPLOAD_MAX_REQUEST_BYTES, before anything reads the body. Django never reads past
  Content-Length, so the declared length bounds what any request can make us read.
- `FileSizeLimitUploadHandler`, the first of FILE_UPLOAD_HANDLERS, hands the storing handlers
  behind it at most UPLOAD_MAX_FILE_BYTES of any one file and frees what they hold as soon as a
  file goes over. The form then gets a `RefusedUpload` (name and size, no content) and says
  "too large" next to the field, keeping everything else the user typed; raising SkipFile
  instead would make the file silently disappear from the form.

Each form field has its own, usually lower, byte limit (e.g. AVATAR_MAX_BYTES), checked before
the image is opened (accounts/stored_files.py).

A URL that takes larger files (firmware images) is named in UPLOAD_LARGE_FILE_URLS with the
setting that holds its limit: there alone a file may have that many bytes, and the request that
many plus UPLOAD_MAX_REQUEST_BYTES (the other fields), so that a file somewhat over the limit
still reaches the form, which names the limit next to the field.
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils import translation


class RequestSizeLimitMiddleware:
    """Early in MIDDLEWARE, before anything (CSRF, sessions, axes) touches request.POST."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0  # Django reads nothing of a body whose length it cannot parse
        if declared > settings.UPLOAD_MAX_REQUEST_BYTES:
            # Resolving the URL costs something, so only for a body over the usual limit.
            limit = request_limit(request)
            if declared > limit:
                return request_too_large(request, limit)
        return self.get_response(request)


def _large_upload_setting(request: HttpRequest) -> str | None:
    """The setting that holds the file limit of this request's URL, if it has its own."""
    large = getattr(settings, "UPLOAD_LARGE_FILE_URLS", None)
    if not large:
        return None
    match = getattr(request, "resolver_match", None)
    if match is None:  # the middleware runs before the URL is resolved
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return None
    return large.get(match.view_name)


def file_limit(request: HttpRequest) -> int:
    """The most bytes one file of this request may have."""
    setting = _large_upload_setting(request)
    return getattr(settings, setting) if setting else settings.UPLOAD_MAX_FILE_BYTES


def request_limit(request: HttpRequest) -> int:
    """The most bytes this request's body may declare."""
    setting = _large_upload_setting(request)
    if not setting:
        return settings.UPLOAD_MAX_REQUEST_BYTES
    return getattr(settings, setting) + settings.UPLOAD_MAX_REQUEST_BYTES


def request_too_large(request: HttpRequest, limit: int | None = None) -> HttpResponse:
    # The user's language is not known yet (no session): the browser's is the best guess.
    with translation.override(translation.get_language_from_request(request)):
        body = render_to_string(
            "413.html",
            {
                "LANGUAGE_CODE": translation.get_language(),
                "limit": filesizeformat(limit or settings.UPLOAD_MAX_REQUEST_BYTES),
            },
        )
    return HttpResponse(body, status=413)


class RefusedUpload(UploadedFile):
    """Stands in for a file that went over UPLOAD_MAX_FILE_BYTES: its name and the number of
    bytes received, without content. Image fields check `too_large` before reading."""

    too_large = True

    def __init__(self, name, content_type, size, charset, content_type_extra) -> None:
        super().__init__(io.BytesIO(), name, content_type, size, charset, content_type_extra)


class FileSizeLimitUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.limit = file_limit(self.request)
        self.received = 0
        # The part's own Content-Length, when the client sends one, refuses it at once.
        self.too_large = self.content_length is not None and self.content_length > self.limit

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        if not self.too_large and self.received > self.limit:
            self.too_large = True
            self._release_stored_part()
        # None stops the chunk here: the storing handlers behind us never see it.
        return None if self.too_large else raw_data

    def file_complete(self, file_size: int) -> UploadedFile | None:
        if not self.too_large:
            return None  # the next handler hands over the stored file
        self._release_stored_part()
        return RefusedUpload(
            self.file_name,
            self.content_type,
            max(self.received, self.content_length or 0),
            self.charset,
            self.content_type_extra,
        )

    def _release_stored_part(self) -> None:
        """Free what the storing handlers hold of the current file (memory or a temporary
        file), the way the multipart parser itself does on SkipFile."""
        for handler in self.request.upload_handlers:
            if handler is not self and getattr(handler, "file", None) is not None:
                handler.file.close()
