"""Mail delivery for the embedded run: every message goes to the console and to a folder.

A person trying the portal without an SMTP server reads verification codes and temporary
passwords from the terminal or from `.matricloud/mail/*.eml` (one file per message, which any
mail program opens).
"""

import uuid
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.console import EmailBackend as ConsoleBackend
from django.utils import timezone


class ConsoleAndFolderBackend(BaseEmailBackend):
    def __init__(self, fail_silently: bool = False, **kwargs) -> None:
        super().__init__(fail_silently=fail_silently)
        self._console = ConsoleBackend(fail_silently=fail_silently, **kwargs)

    def send_messages(self, email_messages) -> int:
        if not email_messages:
            return 0
        folder = Path(settings.MAIL_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        self._console.send_messages(email_messages)
        sent = 0
        for message in email_messages:
            try:
                stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
                path = folder / f"{stamp}-{uuid.uuid4().hex[:8]}.eml"
                path.write_bytes(message.message().as_bytes(linesep="\n"))
                sent += 1
            except Exception:
                if not self.fail_silently:
                    raise
        return sent
