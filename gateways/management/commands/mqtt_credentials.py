"""`manage.py mqtt_credentials`: gateway secrets and the broker's password/ACL files.

    mqtt_credentials provision GW0001 GW0002    # new secrets, printed once: "GW0001 <secret>"
    mqtt_credentials provision --missing        # every gateway that has none yet
    mqtt_credentials write [--password-file P] [--acl-file A] [--service user:pass]...
                           [--sighup PID | --pid-file /run/mosquitto/mosquitto.pid]

`write` always includes the user of settings.MQTT_URL as a service account (the portal and
ingest sign in with it), unless --no-url-account.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from gateways.credentials import (
    ServiceAccount,
    provision_gateway,
    reload_mosquitto,
    write_broker_files,
)
from gateways.models import Gateway


def _default_path(setting: str, name: str) -> Path:
    return Path(getattr(settings, setting, None) or settings.DATA_DIR / "mosquitto" / name)


class Command(BaseCommand):
    help = "Provision gateway MQTT secrets and write Mosquitto password and ACL files."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        prov = sub.add_parser("provision", help="new secrets for gateways (shown once)")
        prov.add_argument("serials", nargs="*")
        prov.add_argument("--missing", action="store_true", help="gateways without a secret")
        write = sub.add_parser("write", help="write the password and ACL files")
        write.add_argument("--password-file", type=Path)
        write.add_argument("--acl-file", type=Path)
        write.add_argument(
            "--service", action="append", default=[], help="user:password of a service account"
        )
        write.add_argument("--no-url-account", action="store_true")
        write.add_argument("--sighup", type=int, metavar="PID", help="reload this mosquitto")
        write.add_argument("--pid-file", type=Path, help="reload the mosquitto of this pid file")

    def handle(self, *args, **opts):
        if opts["action"] == "provision":
            self._provision(opts["serials"], opts["missing"])
        else:
            self._write(opts)

    def _provision(self, serials: list[str], missing: bool) -> None:
        if not serials and not missing:
            raise CommandError("name gateway serial numbers or pass --missing")
        gateways = Gateway.objects.filter(serial_number__in=serials) if serials else []
        found = {g.serial_number for g in gateways}
        unknown = sorted(set(serials) - found)
        if unknown:
            raise CommandError(f"unknown gateway(s): {', '.join(unknown)}")
        if missing:
            gateways = list(gateways) + list(Gateway.objects.filter(mqtt_password_hash=""))
        for gateway in gateways:
            self.stdout.write(f"{gateway.serial_number} {provision_gateway(gateway)}")

    def _write(self, opts) -> None:
        try:
            accounts = [ServiceAccount.parse(s) for s in opts["service"]]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        url_account = ServiceAccount.from_url(settings.MQTT_URL)
        if url_account and not opts["no_url_account"]:
            accounts.insert(0, url_account)
        password_file = opts["password_file"] or _default_path("MQTT_PASSWORD_FILE", "passwd")
        acl_file = opts["acl_file"] or _default_path("MQTT_ACL_FILE", "acl")
        users = write_broker_files(password_file, acl_file, accounts)
        self.stdout.write(f"wrote {password_file} ({users} users) and {acl_file}")
        pid = opts["sighup"]
        if opts["pid_file"]:
            try:
                pid = int(opts["pid_file"].read_text().strip())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read a pid from {opts['pid_file']}: {exc}") from exc
        if pid:
            try:
                reload_mosquitto(pid)
            except OSError as exc:
                raise CommandError(f"cannot signal process {pid}: {exc}") from exc
            self.stdout.write(f"sent SIGHUP to {pid}")
