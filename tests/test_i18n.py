"""German and Italian: the signed-in user's language applies to every page, a visitor can
switch the language on the sign-in page, and the catalogues are complete and compiled.

The catalogues are read with a small PO parser and Python's gettext, not with polib, which is
not a dependency of the project.
"""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

LANGUAGES = ("de", "it")
COMPANY_LIST_URL = reverse("accounts:company_list")
LOGIN_URL = reverse("accounts:login")
PROFILE_URL = reverse("accounts:profile")

# What a signed-in administrator of Helios (2 users, 1 sub-company; SunFix below it has 3 users
# and none) sees on Account → Company: main menu, user menu, breadcrumbs, heading, tree.
COMPANY_PAGE = {
    "de": [
        '<html lang="de">',
        "<span>Startseite</span>",
        "<span>Konto</span>",
        "<span>Anlage</span>",
        "<span>Wechselrichter</span>",
        "<span>Wartung</span>",
        '<li class="breadcrumb-item">Konto</li>',
        '<h1 class="h4 mb-1">Unternehmen</h1>',
        "Unternehmen hinzufügen",
        "Benutzereinstellungen",
        "Abmelden",
        "Administrator",
        "2 Benutzer",
        "1 Unterunternehmen",
        "Energiespeicher-Portal",
    ],
    "it": [
        '<html lang="it">',
        "<span>Home</span>",
        "<span>Account</span>",
        "<span>Impianto</span>",
        "<span>Inverter</span>",
        "<span>Aggiornamento</span>",
        "<span>Manutenzione</span>",
        '<h1 class="h4 mb-1">Azienda</h1>',
        "Aggiungi azienda",
        "Configurazione utente",
        "Esci",
        "Amministratore",
        "2 utenti",
        "3 utenti",
        "1 sottoazienda",
        "0 sottoaziende",
    ],
}
ENGLISH_ONLY = ["Log out", "User configuration", "Add Company", "Maintenance", "sub-company"]


# --- pages --------------------------------------------------------------------------------


def _signed_in_as(client_for, user, language):
    user.language = language
    user.save(update_fields=["language"])
    return client_for(user)


@pytest.mark.parametrize("language", LANGUAGES)
def test_signed_in_user_sees_the_company_page_in_their_language(tenants, client_for, language):
    client = _signed_in_as(client_for, tenants.helios_admin, language)
    response = client.get(COMPANY_LIST_URL)
    assert response.status_code == 200
    text = response.text
    for expected in COMPANY_PAGE[language]:
        assert expected in text, expected
    for english in ENGLISH_ONLY:
        assert english not in text, english


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("de", ["Profil", "Kontosicherheit", "Zeitzone", "Aktualisieren", "Abmelden"]),
        ("it", ["Profilo", "Sicurezza dell'account", "Fuso orario", "Aggiorna", "Esci"]),
    ],
)
def test_user_configuration_in_the_users_language(tenants, client_for, language, expected):
    client = _signed_in_as(client_for, tenants.sunfix_om, language)
    text = client.get(PROFILE_URL).text
    for string in expected:
        assert string in text, string
    assert "Account security" not in text


def test_the_users_language_wins_over_the_language_cookie(tenants, client_for):
    client = _signed_in_as(client_for, tenants.helios_admin, "de")
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "it"
    text = client.get(COMPANY_LIST_URL).text
    assert "Abmelden" in text
    assert "Esci" not in text


def test_choosing_a_language_in_the_profile_applies_at_once(tenants, client_for):
    user = tenants.helios_om
    client = client_for(user)
    data = {
        "username": user.username,
        "currency": "EUR",
        "language": "it",
        "time_zone": "Europe/Rome",
    }
    response = client.post(PROFILE_URL, data, follow=True)
    assert response.redirect_chain[-1][0] == PROFILE_URL
    text = response.text
    assert "Il Suo profilo è stato aggiornato." in text
    assert "Configurazione utente" in text and "Esci" in text
    user.refresh_from_db()
    assert user.language == "it"


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        (
            "it",
            ['<html lang="it">', "Accedi", "Password dimenticata?", "Non ha ancora un account?"],
        ),
        ("de", ['<html lang="de">', "Anmelden", "Passwort vergessen?", "Noch kein Konto?"]),
    ],
)
def test_visitor_switches_the_language_on_the_sign_in_page(client, db, language, expected):
    response = client.post(
        reverse("set_language"), {"language": language, "next": LOGIN_URL}, follow=True
    )
    assert response.redirect_chain == [(LOGIN_URL, 302)]
    assert response.status_code == 200
    text = response.text
    for string in expected:
        assert string in text, string
    assert f'<option value="{language}" selected>' in text
    assert "Forgot password?" not in text
    # The choice is remembered for the next visit.
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == language
    assert expected[1] in client.get(LOGIN_URL).text


# --- catalogues ---------------------------------------------------------------------------


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: str = ""
    msgstr_plural: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def catalog_key(self):
        """The key of this entry in gettext.GNUTranslations._catalog."""
        msgid = self.msgid if self.msgctxt is None else f"{self.msgctxt}\x04{self.msgid}"
        return (msgid, 0) if self.msgid_plural is not None else msgid


def parse_po(path: Path) -> tuple[Entry, list[Entry]]:
    """The header and the entries of a PO file; obsolete (#~) entries are left out."""
    entries: list[Entry] = []
    flags: set[str] = set()
    last: tuple[str, int | None] = ("", None)  # the keyword a continuation line extends
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#,"):
            flags |= {flag.strip() for flag in line[2:].split(",")}
        if not line or line.startswith("#"):
            continue
        if line.startswith('"'):
            keyword, value = "", ast.literal_eval(line)
        else:
            keyword, _, rest = line.partition(" ")
            value = ast.literal_eval(rest)
        if keyword == "msgctxt" or (keyword == "msgid" and last[0] in ("", "msgstr")):
            entries.append(Entry(line=number, flags=flags))
            flags = set()
        entry = entries[-1]
        plural = re.fullmatch(r"msgstr\[(\d+)\]", keyword)
        if plural:
            last = ("msgstr", int(plural[1]))
            entry.msgstr_plural[last[1]] = value
        elif keyword:
            assert keyword in ("msgctxt", "msgid", "msgid_plural", "msgstr"), f"{path}:{number}"
            last = (keyword, None)
            setattr(entry, keyword, value)
        elif last[1] is not None:
            entry.msgstr_plural[last[1]] += value
        else:
            setattr(entry, last[0], getattr(entry, last[0]) + value)
    header, *rest = entries
    assert header.msgid == "" and header.msgctxt is None, f"{path}: no header entry"
    return header, rest


def po_path(language: str) -> Path:
    return Path(settings.LOCALE_PATHS[0]) / language / "LC_MESSAGES" / "django.po"


def header_fields(header: Entry) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in header.msgstr.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def where(path: Path, entry: Entry) -> str:
    return f"{path.name}:{entry.line} {entry.msgid!r}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_catalogue_header(language):
    header, entries = parse_po(po_path(language))
    fields = header_fields(header)
    assert "fuzzy" not in header.flags
    assert fields["Language"] == language
    assert fields["Content-Type"] == "text/plain; charset=UTF-8"
    assert fields["Plural-Forms"].startswith("nplurals=2; plural=(n != 1);")
    assert len(entries) > 300  # every page of the portal, not a stub


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_entry_is_translated_and_not_fuzzy(language):
    path = po_path(language)
    _, entries = parse_po(path)
    for entry in entries:
        assert "fuzzy" not in entry.flags, where(path, entry)
        if entry.msgid_plural is not None:
            assert sorted(entry.msgstr_plural) == [0, 1], where(path, entry)
            assert all(entry.msgstr_plural.values()), where(path, entry)
        else:
            assert entry.msgstr, where(path, entry)


PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\w*\}")
TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def _markers(text: str) -> tuple[list[str], list[str]]:
    return sorted(PLACEHOLDER.findall(text)), TAG.findall(text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_placeholders_and_markup(language):
    path = po_path(language)
    _, entries = parse_po(path)
    for entry in entries:
        if entry.msgid_plural is None:
            assert _markers(entry.msgstr) == _markers(entry.msgid), where(path, entry)
        else:
            assert _markers(entry.msgstr_plural[1]) == _markers(entry.msgid_plural), where(
                path, entry
            )
            allowed = set(PLACEHOLDER.findall(entry.msgid + entry.msgid_plural))
            assert set(PLACEHOLDER.findall(entry.msgstr_plural[0])) <= allowed, where(path, entry)


@pytest.mark.parametrize("language", LANGUAGES)
def test_compiled_catalogue_matches_the_po_file(language):
    """The committed .mo holds exactly the .po's translations: it was compiled after the
    last edit, so a machine without gettext shows the same texts."""
    path = po_path(language)
    _, entries = parse_po(path)
    with path.with_suffix(".mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    catalog = dict(compiled._catalog)
    catalog.pop("", None)  # the header
    expected = {}
    for entry in entries:
        if entry.msgid_plural is None:
            expected[entry.catalog_key] = entry.msgstr
        else:
            for index, text in entry.msgstr_plural.items():
                expected[(entry.catalog_key[0], index)] = text
    assert catalog == expected
    # And through the public API, with the plural rule of the header.
    for entry in entries:
        if entry.msgid_plural is None:
            if entry.msgctxt is None:
                assert compiled.gettext(entry.msgid) == entry.msgstr, where(path, entry)
        elif entry.msgctxt is None:
            for count, index in ((1, 0), (2, 1), (0, 1)):
                assert (
                    compiled.ngettext(entry.msgid, entry.msgid_plural, count)
                    == entry.msgstr_plural[index]
                ), where(path, entry)
