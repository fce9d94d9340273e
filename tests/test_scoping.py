"""Visibility and role rules, straight against the one module that owns them."""

import pytest

from accounts.models import Company, User
from accounts.permissions import assignable_roles, can


@pytest.mark.django_db
def test_distributor_sees_itself_and_companies_below(tenants):
    visible = set(Company.objects.visible_to(tenants.helios_admin))
    assert visible == {tenants.helios, tenants.sunfix}


@pytest.mark.django_db
def test_installer_does_not_see_its_superior(tenants):
    assert set(Company.objects.visible_to(tenants.sunfix_om)) == {tenants.sunfix}


@pytest.mark.django_db
def test_foreign_tenant_is_invisible(tenants):
    assert tenants.helios not in Company.objects.visible_to(tenants.nordlicht_admin)
    assert not User.objects.visible_to(tenants.nordlicht_admin).filter(company=tenants.sunfix)


@pytest.mark.django_db
def test_owner_sees_only_own_user_and_company(tenants):
    assert list(User.objects.visible_to(tenants.owner)) == [tenants.owner]
    assert list(Company.objects.visible_to(tenants.owner)) == [tenants.sunfix]


@pytest.mark.django_db
def test_only_admins_delete_companies_and_change_roles(tenants):
    assert can(tenants.helios_admin, "company.delete", tenants.sunfix)
    assert not can(tenants.helios_om, "company.delete", tenants.sunfix)
    assert can(tenants.helios_admin, "user.change_role", tenants.sunfix_om)
    assert not can(tenants.helios_om, "user.change_role", tenants.sunfix_om)
    assert not can(tenants.owner, "company.view")


@pytest.mark.django_db
def test_no_action_on_a_foreign_object(tenants):
    assert not can(tenants.nordlicht_admin, "company.change", tenants.sunfix)
    assert not can(tenants.nordlicht_admin, "user.reset_password", tenants.sunfix_om)


@pytest.mark.django_db
def test_own_company_and_own_role_are_protected(tenants):
    assert not can(tenants.helios_admin, "company.delete", tenants.helios)
    assert not can(tenants.helios_admin, "user.change_role", tenants.helios_admin)


@pytest.mark.django_db
def test_om_cannot_hand_out_administrator(tenants):
    assert "admin" not in assignable_roles(tenants.helios_om)
    assert "admin" in assignable_roles(tenants.helios_admin)
    assert assignable_roles(tenants.owner) == []
