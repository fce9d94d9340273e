"""The audit trail of account changes: every change to a company, a user or one's own account
writes exactly one AuditEvent (who, what, on which object, the changed fields before and
after); a refused change writes none; secrets never reach it; administrators see the events of
their company tree only."""

import json
import re

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from accounts import audit, codes, services
from accounts.models import AuditAction, AuditEvent, CodePurpose, Company, Role, User
from accounts.profile_services import change_email, change_password, update_profile
from accounts.registration import deregister, register_account
from tests.factories import (
    DEMO_PASSWORD,
    AuditEventFactory,
    CompanyFactory,
    UserFactory,
    profile_form_data,
)

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "Copper-Wind3$"


def only_event() -> AuditEvent:
    """The one event written, whatever else the test set up."""
    events = list(AuditEvent.objects.all())
    assert len(events) == 1, [str(e) for e in events]
    return events[0]


def assert_about(event: AuditEvent, actor: User, action: str, obj) -> None:
    assert event.action == action
    assert event.actor == actor and event.actor_label == actor.email
    assert event.company_id == actor.company_id and event.company_path == actor.company.path
    assert (event.object_type, event.object_id) == (obj._meta.label_lower, str(obj.pk))
    assert event.object_label == str(obj)


def recorded_text(event: AuditEvent) -> str:
    return json.dumps([event.before, event.after])


def assert_no_secret(event: AuditEvent, *secrets: str) -> None:
    text = recorded_text(event)
    assert "password" not in {*event.before, *event.after}
    for secret in secrets:
        assert secret not in text


def temporary_password(message) -> str:
    return re.search(r"Temporary password: (\S+)", message.body).group(1)


# --- Companies --------------------------------------------------------------------------------


def test_adding_a_company(tenants):
    company = services.create_company(
        acting_user=tenants.helios_admin,
        company_type="installer",
        superior=tenants.helios,
        name="ChintEurope",
        country="IT",
        description="Installer in Milan",
    )
    event = only_event()
    assert_about(event, tenants.helios_admin, AuditAction.COMPANY_CREATED, company)
    assert event.before == {}
    assert event.after == {
        "type": "installer",
        "superior": tenants.helios.pk,
        "name": "ChintEurope",
        "country": "IT",
        "description": "Installer in Milan",
    }
    assert tenants.helios.access_code not in recorded_text(event)


def test_editing_a_company_records_only_the_changed_fields(tenants):
    services.update_company(
        tenants.sunfix,
        acting_user=tenants.sunfix_om,
        name="SunFix GmbH",
        country="AT",
        address="",
        description="",
    )
    event = only_event()
    assert_about(event, tenants.sunfix_om, AuditAction.COMPANY_EDITED, tenants.sunfix)
    assert event.before == {"name": "SunFix Installers", "country": "DE"}
    assert event.after == {"name": "SunFix GmbH", "country": "AT"}


def test_saving_a_company_unchanged_records_nothing(tenants):
    services.update_company(
        tenants.sunfix, acting_user=tenants.sunfix_admin, name="SunFix Installers"
    )
    assert not AuditEvent.objects.exists()


def test_deleting_a_company_keeps_its_event(tenants):
    empty = CompanyFactory(superior=tenants.sunfix, name="Empty Installer", country="AT")
    pk = empty.pk
    services.delete_company(empty, acting_user=tenants.helios_admin)
    event = only_event()
    assert not Company.objects.filter(pk=pk).exists()
    assert event.action == AuditAction.COMPANY_DELETED
    assert (event.object_id, event.object_label) == (str(pk), "Empty Installer")
    assert event.before == {
        "type": "installer",
        "superior": tenants.sunfix.pk,
        "name": "Empty Installer",
        "country": "AT",
    }
    assert event.after == {}


def test_the_web_pages_record_through_the_services(tenants, client_for):
    client = client_for(tenants.helios_admin)
    response = client.post(
        reverse("accounts:company_detail", args=[tenants.sunfix.pk]),
        {"name": "SunFix GmbH", "country": "DE", "address": "", "description": ""},
    )
    assert response.status_code == 302
    event = only_event()
    tenants.sunfix.refresh_from_db()
    assert_about(event, tenants.helios_admin, AuditAction.COMPANY_EDITED, tenants.sunfix)
    assert event.client_address == "127.0.0.1"


def test_a_service_called_outside_a_request_records_no_address(tenants):
    services.change_role(tenants.owner, acting_user=tenants.sunfix_admin, role=Role.OM)
    assert only_event().client_address is None


# --- Users ------------------------------------------------------------------------------------


def test_adding_a_user_with_a_temporary_password(tenants, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        user = services.create_user(
            acting_user=tenants.sunfix_admin,
            company=tenants.sunfix,
            email="Nina@SunFix.example",
            username="Nina Neu",
            role=Role.OM,
            supervisor=tenants.sunfix_admin,
        )
    event = only_event()
    assert_about(event, tenants.sunfix_admin, AuditAction.USER_CREATED, user)
    assert event.before == {}
    assert event.after == {
        "email": "nina@sunfix.example",
        "username": "Nina Neu",
        "company": tenants.sunfix.pk,
        "role": "om",
        "supervisor": tenants.sunfix_admin.pk,
        "time_zone": "Europe/Berlin",
        "password_is_temporary": True,
    }
    assert_no_secret(event, temporary_password(mail.outbox[0]), user.password)


def test_adding_a_user_with_a_chosen_password(tenants):
    user = services.create_user(
        acting_user=tenants.helios_om,
        company=tenants.sunfix,
        email="nina@sunfix.example",
        username="Nina",
        role=Role.OWNER,
        password=NEW_PASSWORD,
    )
    event = only_event()
    assert_about(event, tenants.helios_om, AuditAction.USER_CREATED, user)
    assert "password_is_temporary" not in event.after
    assert_no_secret(event, NEW_PASSWORD, user.password)


def test_editing_a_user(tenants):
    services.update_user(
        tenants.sunfix_om,
        acting_user=tenants.helios_om,
        username="Sam Service",
        supervisor=tenants.sunfix_admin,
        description="",
    )
    event = only_event()
    assert_about(event, tenants.helios_om, AuditAction.USER_EDITED, tenants.sunfix_om)
    assert event.before == {"username": "SunFix O&M", "supervisor": None}
    assert event.after == {"username": "Sam Service", "supervisor": tenants.sunfix_admin.pk}


def test_changing_a_role(tenants, client_for):
    response = client_for(tenants.helios_admin).post(
        reverse("accounts:user_role", args=[tenants.sunfix_om.pk]), {"role": Role.ADMIN}
    )
    assert response.status_code == 302
    event = only_event()
    assert_about(event, tenants.helios_admin, AuditAction.USER_ROLE_CHANGED, tenants.sunfix_om)
    assert event.before == {"role": "om"}
    assert event.after == {"role": "admin"}


def test_resetting_a_password_says_so_without_the_password(
    tenants, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.reset_user_password(tenants.owner, acting_user=tenants.sunfix_om)
    event = only_event()
    assert_about(event, tenants.sunfix_om, AuditAction.USER_PASSWORD_RESET, tenants.owner)
    assert event.before == {"password_is_temporary": False}
    assert event.after == {"password_is_temporary": True}
    tenants.owner.refresh_from_db()
    assert_no_secret(event, temporary_password(mail.outbox[0]), tenants.owner.password)


def test_a_second_reset_is_recorded_too(tenants):
    services.reset_user_password(tenants.owner, acting_user=tenants.sunfix_om)
    services.reset_user_password(tenants.owner, acting_user=tenants.sunfix_om)
    latest = AuditEvent.objects.first()
    assert AuditEvent.objects.count() == 2
    assert (latest.action, latest.before, latest.after) == (AuditAction.USER_PASSWORD_RESET, {}, {})


# --- Refused changes --------------------------------------------------------------------------


def test_om_cannot_change_a_role_and_nothing_is_recorded(tenants, client_for):
    response = client_for(tenants.helios_om).post(
        reverse("accounts:user_role", args=[tenants.owner.pk]), {"role": Role.OM}
    )
    assert response.status_code == 403
    with pytest.raises(PermissionDenied):
        services.change_role(tenants.owner, acting_user=tenants.helios_om, role=Role.OM)
    assert User.objects.get(pk=tenants.owner.pk).role == Role.OWNER
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        lambda t: services.delete_company(t.sunfix, acting_user=t.helios_om),
        lambda t: services.update_company(t.sunfix, acting_user=t.nordlicht_admin, name="Mine"),
        lambda t: services.update_user(t.helios_om, acting_user=t.sunfix_admin, username="X"),
        lambda t: services.reset_user_password(t.sunfix_admin, acting_user=t.sunfix_om),
        lambda t: services.create_user(
            acting_user=t.owner, company=t.sunfix, email="x@example.com", username="X", role="owner"
        ),
        lambda t: update_profile(t.sunfix_om, acting_user=t.sunfix_admin, username="X"),
        lambda t: change_password(t.owner, acting_user=t.sunfix_admin, new_password=NEW_PASSWORD),
        lambda t: deregister(t.owner, acting_user=t.sunfix_admin),
    ],
    ids=[
        "om deletes a company",
        "foreign admin edits a company",
        "admin edits a user above",
        "om resets an admin's password",
        "owner adds a user",
        "admin edits another's profile",
        "admin changes another's password",
        "admin deregisters another",
    ],
)
def test_a_refused_change_records_nothing(tenants, change):
    before = {u.pk: (u.username, u.role, u.password) for u in User.objects.all()}
    companies = {c.pk: c.name for c in Company.objects.all()}
    with pytest.raises(PermissionDenied):
        change(tenants)
    assert not AuditEvent.objects.exists()
    assert {u.pk: (u.username, u.role, u.password) for u in User.objects.all()} == before
    assert {c.pk: c.name for c in Company.objects.all()} == companies


def test_a_deletion_refused_for_its_contents_records_nothing(tenants):
    with pytest.raises(services.CompanyDeletionRefused):
        services.delete_company(tenants.sunfix, acting_user=tenants.helios_admin)
    assert not AuditEvent.objects.exists()


def test_an_invalid_edit_records_nothing(tenants):
    with pytest.raises(services.ValidationError):
        services.update_company(tenants.sunfix, acting_user=tenants.sunfix_admin, name="")
    assert not AuditEvent.objects.exists()


# --- One's own account ------------------------------------------------------------------------


def test_editing_the_profile(tenants, client_for):
    user = tenants.owner
    data = profile_form_data(user, username="Olivia R.", currency="CHF", time_zone="Europe/Zurich")
    assert client_for(user).post(reverse("accounts:profile"), data).status_code == 302
    event = only_event()
    assert_about(event, user, AuditAction.PROFILE_EDITED, User.objects.get(pk=user.pk))
    assert event.before == {"username": "Olivia Owner", "currency": "EUR", "time_zone": "UTC"}
    assert event.after == {"username": "Olivia R.", "currency": "CHF", "time_zone": "Europe/Zurich"}


def test_saving_the_profile_unchanged_records_nothing(tenants, client_for):
    user = tenants.owner
    client_for(user).post(reverse("accounts:profile"), profile_form_data(user))
    assert not AuditEvent.objects.exists()


def test_changing_ones_password(tenants, client_for):
    user = tenants.helios_om
    response = client_for(user).post(
        reverse("accounts:change_password"),
        {
            "old_password": DEMO_PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    event = only_event()
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert_about(event, user, AuditAction.PASSWORD_CHANGED, user)
    assert (event.before, event.after) == ({}, {})
    assert_no_secret(event, NEW_PASSWORD, DEMO_PASSWORD, user.password)


def test_choosing_a_password_after_a_temporary_one(tenants):
    user = tenants.owner
    user.password_is_temporary = True
    user.save()
    change_password(user, acting_user=user, new_password=NEW_PASSWORD)
    event = only_event()
    assert event.action == AuditAction.PASSWORD_CHANGED
    assert (event.before, event.after) == (
        {"password_is_temporary": True},
        {"password_is_temporary": False},
    )


def test_a_forgotten_password_reset_with_the_emailed_code(
    tenants, client_for, django_capture_on_commit_callbacks
):
    user = tenants.helios_om
    with django_capture_on_commit_callbacks(execute=True):
        codes.issue_code(user.email, CodePurpose.RESET_PASSWORD, user=user)
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    response = client_for(None).post(
        reverse("accounts:forgot_password"),
        {
            "email": user.email,
            "code": code,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert response.status_code == 302
    event = only_event()
    user.refresh_from_db()
    assert_about(event, user, AuditAction.PASSWORD_RECOVERED, user)
    assert_no_secret(event, NEW_PASSWORD, code, user.password)


def test_changing_the_email(tenants, django_capture_on_commit_callbacks):
    user = tenants.helios_om
    with django_capture_on_commit_callbacks(execute=True):
        codes.issue_code("ops@helios.example", CodePurpose.EMAIL_NEW, user=user)
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    change_email(user, acting_user=user, new_email="Ops@Helios.example", code=code)
    event = only_event()
    assert User.objects.get(pk=user.pk).email == "ops@helios.example"
    assert_about(event, user, AuditAction.EMAIL_CHANGED, user)
    assert event.before == {"email": "om@helios.example"}
    assert event.after == {"email": "ops@helios.example"}
    assert code not in recorded_text(event)


def test_a_wrong_email_code_records_nothing(tenants):
    user = tenants.helios_om
    codes.issue_code("ops@helios.example", CodePurpose.EMAIL_NEW, user=user)
    with pytest.raises(codes.CodeError):
        change_email(user, acting_user=user, new_email="ops@helios.example", code="000000x")
    assert not AuditEvent.objects.exists()
    assert User.objects.get(pk=user.pk).email == "om@helios.example"


def test_deregistering(tenants):
    user, pk = tenants.owner, tenants.owner.pk
    deregister(user, acting_user=user)
    event = only_event()
    assert (event.action, event.object_id, event.object_label) == (
        AuditAction.USER_DEREGISTERED,
        str(pk),
        "Olivia Owner",
    )
    # The account is gone: the event keeps its email and company.
    assert event.actor is None and event.actor_label == "owner@sunfix.example"
    assert event.company == tenants.sunfix
    assert event.before == {
        "email": "owner@sunfix.example",
        "username": "Olivia Owner",
        "company": tenants.sunfix.pk,
        "role": "owner",
    }


def test_the_last_user_deregistering_takes_the_company_along(tenants):
    company = CompanyFactory(superior=tenants.sunfix, name="Solo Installer")
    solo = UserFactory(company=company, role=Role.ADMIN)
    deregister(solo, acting_user=solo)
    user_event, company_event = AuditEvent.objects.order_by("id")
    assert user_event.action == AuditAction.USER_DEREGISTERED
    assert company_event.action == AuditAction.COMPANY_DELETED
    assert company_event.object_label == "Solo Installer"
    # Both stay in the log of the companies above.
    assert set(AuditEvent.objects.visible_to(tenants.sunfix_admin)) == {user_event, company_event}
    assert company_event.company is None and company_event.company_path == company.path


def test_registering_an_account(tenants):
    user = register_account(
        account_type="installer",
        company_name="Solar Süd",
        country="DE",
        email="info@solarsued.example",
        password=NEW_PASSWORD,
        access_code=tenants.sunfix.access_code,
        language="de",
    )
    event = only_event()
    assert_about(event, user, AuditAction.ACCOUNT_REGISTERED, user)
    assert event.after == {
        "email": "info@solarsued.example",
        "username": "Solar Süd",
        "company": user.company_id,
        "role": "admin",
        "country": "DE",
        "language": "de",
        "time_zone": "Europe/Berlin",
    }
    assert_no_secret(event, NEW_PASSWORD, user.password)
    assert event in AuditEvent.objects.visible_to(tenants.sunfix_admin)


# --- The helper -------------------------------------------------------------------------------


def test_secrets_are_dropped_whatever_the_caller_passes(tenants):
    event = audit.record(
        tenants.helios_admin,
        AuditAction.USER_EDITED,
        tenants.helios_om,
        before={"password": "x", "code_hash": "y", "username": "a"},
        after={"password": "z", "access_code": "w", "username": "b"},
    )
    assert (event.before, event.after) == ({"username": "a"}, {"username": "b"})
    assert "password" not in audit.snapshot(tenants.helios_om, ["password", "username"])


# --- Who sees which events --------------------------------------------------------------------


@pytest.fixture
def events(tenants):
    return {
        "helios": AuditEventFactory(actor=tenants.helios_admin),
        "sunfix": AuditEventFactory(actor=tenants.sunfix_om),
        "nordlicht": AuditEventFactory(actor=tenants.nordlicht_admin),
        "platform": AuditEventFactory(actor=UserFactory(company=None, is_superuser=True)),
    }


def visible(user, events) -> set[str]:
    shown = set(AuditEvent.objects.visible_to(user))
    return {name for name, event in events.items() if event in shown}


def test_an_administrator_sees_the_events_of_their_company_tree(tenants, events):
    assert visible(tenants.helios_admin, events) == {"helios", "sunfix"}
    assert visible(tenants.sunfix_admin, events) == {"sunfix"}


def test_om_engineers_and_owners_see_no_events(tenants, events):
    assert visible(tenants.helios_om, events) == set()
    assert visible(tenants.sunfix_om, events) == set()  # not even their own
    assert visible(tenants.owner, events) == set()


def test_a_foreign_administrator_sees_only_their_tenant(tenants, events):
    assert visible(tenants.nordlicht_admin, events) == {"nordlicht"}


def test_the_platform_operator_sees_everything(events):
    operator = events["platform"].actor
    assert visible(operator, events) == {"helios", "sunfix", "nordlicht", "platform"}


def test_an_inactive_administrator_sees_nothing(tenants, events):
    tenants.helios_admin.is_active = False
    assert visible(tenants.helios_admin, events) == set()
