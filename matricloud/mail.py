"""Mail delivery for the embedded run: every message goes to the console and to a folder.

A person trying the portal without an SMTP server reads verification codes and temporary
passwords from the terminal or from `.matricloud/mail/*.eml`.
"""

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.core.mail.backends.filebased import EmailBackend as FileBackend


class ConsoleAndFolderBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs) -> None:
        super().__init__(fail_silently=fail_silently)
        settings.MAIL_DIR.mkdir(parents=True, exist_ok=True)
        self._backends = [
            ConsoleBackend(fail_silently=fail_silently, **kwargs),
            FileBackend(fail_silently=fail_silently, file_path=str(settings.MAIL_DIR), **kwargs),
        ]

    def send_messages(self, email_messages) -> int:
        sent = 0
        for backend in self._backends:
            sent = backend.send_messages(email_messages) or sent
        return sent
