"""`manage.py mqtt_credentials`: gateway secrets and the broker's password/ACL files.

    mqtt_credentials provision GW0001 GW0002    # new secrets, printed once: "GW0001 <secret>"
    mqtt_credentials provision --missing        # every gateway that has none yet
    mqtt_credentials write [--password-file P] [--acl-file A] [--service user:pass]...
                           [--drop-service NAME]... [--no-url-account]
                           [--sighup PID | --pid-file /run/mosquitto/mosquitto.pid]

`write` keeps the service accounts of the files it replaces (hash and topic rules), adds the
user of settings.MQTT_URL (unless --no-url-account) and every --service, and removes only the
accounts named with --drop-service; gateways come from the database
(gateways.credentials.write_broker_files).
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
            "--service",
            action="append",
            default=[],
            metavar="USER:PASSWORD",
            help="add a service account (readwrite mc/v1/#), or set an existing one's password",
        )
        write.add_argument(
            "--drop-service",
            action="append",
            default=[],
            metavar="NAME",
            help="remove a service account the current files have (kept otherwise)",
        )
        write.add_argument(
            "--no-url-account", action="store_true", help="do not add the user of MQTT_URL"
        )
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
            # The one place a secret is shown: it is loaded into the gateway from here.
            self.stdout.write(f"{gateway.serial_number} {provision_gateway(gateway)}")

    def _write(self, opts) -> None:
        password_file = opts["password_file"] or _default_path("MQTT_PASSWORD_FILE", "passwd")
        acl_file = opts["acl_file"] or _default_path("MQTT_ACL_FILE", "acl")
        pid = opts["sighup"]
        if opts["pid_file"]:
            try:
                pid = int(opts["pid_file"].read_text().strip())
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read a pid from {opts['pid_file']}: {exc}") from exc
        try:
            accounts = [ServiceAccount.parse(s) for s in opts["service"]]
            url_account = ServiceAccount.from_url(settings.MQTT_URL)
            if url_account and not opts["no_url_account"]:
                if url_account.username in opts["drop_service"]:
                    raise CommandError(
                        f"{url_account.username!r} is the user of MQTT_URL: "
                        "add --no-url-account to drop it"
                    )
                accounts.insert(0, url_account)
            written = write_broker_files(
                password_file, acl_file, accounts, drop=opts["drop_service"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"cannot write the broker files: {exc}") from exc
        self.stdout.write(f"wrote {password_file} ({written.users} users) and {acl_file}")
        self.stdout.write(f"service accounts: {', '.join(written.service_accounts) or 'none'}")
        if written.dropped:
            self.stdout.write(f"dropped service accounts: {', '.join(written.dropped)}")
        if written.removed:
            removed = ", ".join(written.removed)
            self.stdout.write(f"removed (not a provisioned gateway or service account): {removed}")
        if pid:
            try:
                reload_mosquitto(pid)
            except OSError as exc:
                raise CommandError(f"cannot signal process {pid}: {exc}") from exc
            self.stdout.write(f"sent SIGHUP to {pid}")
