"""Account → Company (guide §5.1): the tree, add, edit and delete a company."""

import io
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from accounts.models import Company, CompanyType, Role
from accounts.services import company_delete_blockers
from tests.factories import CompanyFactory, UserFactory

pytestmark = pytest.mark.django_db

LIST = reverse("accounts:company_list")
ADD = reverse("accounts:company_add")
HTMX_TREE = {"HX-Request": "true", "HX-Target": "company-tree"}


def detail(company):
    return reverse("accounts:company_detail", args=[company.pk])


def delete(company):
    return reverse("accounts:company_delete", args=[company.pk])


def tree_names(nodes, depth=0):
    """The tree as [(depth, name, matched)], in display order."""
    rows = []
    for node in nodes:
        rows.append((depth, node.company.name, node.matched))
        rows += tree_names(node.children, depth + 1)
    return rows


def png(size=(32, 32), noise=False):
    image = Image.new("RGB", size, "white")
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "logo.png"
    return buffer


# --- The tree ---------------------------------------------------------------------------------


def test_distributor_sees_its_subtree_nested(tenants, client_for):
    response = client_for(tenants.helios_admin).get(LIST)
    assert response.status_code == 200
    assert tree_names(response.context["nodes"]) == [
        (0, "Helios Distribution", False),
        (1, "SunFix Installers", False),
    ]
    assert b"Nordlicht" not in response.content
    assert b"Add Company" in response.content


def test_installer_sees_only_its_company(tenants, client_for):
    response = client_for(tenants.sunfix_om).get(LIST)
    assert tree_names(response.context["nodes"]) == [(0, "SunFix Installers", False)]


def test_foreign_tenant_sees_its_own_tree(tenants, client_for):
    response = client_for(tenants.nordlicht_admin).get(LIST)
    assert tree_names(response.context["nodes"]) == [(0, "Nordlicht Energie", False)]
    assert b"Helios" not in response.content


def test_superuser_sees_every_root(tenants, client_for):
    root = UserFactory(company=None, is_superuser=True, role=Role.ADMIN)
    names = tree_names(client_for(root).get(LIST).context["nodes"])
    assert names == [
        (0, "MatriCloud", False),
        (1, "Helios Distribution", False),
        (2, "SunFix Installers", False),
        (1, "Nordlicht Energie", False),
    ]


def test_owner_cannot_open_the_company_page(tenants, client_for):
    assert client_for(tenants.owner).get(LIST).status_code == 403


def test_nodes_show_type_country_and_counts(tenants, client_for):
    response = client_for(tenants.helios_admin).get(LIST)
    helios = response.context["nodes"][0].company
    sunfix = response.context["nodes"][0].children[0].company
    assert (helios.user_count, helios.subordinate_count) == (2, 1)
    assert (sunfix.user_count, sunfix.subordinate_count) == (3, 0)
    html = response.content.decode()
    assert "Distributor" in html and "Installer" in html
    assert "2 users" in html and "1 sub-company" in html and "3 users" in html
    assert "flags/it" in html and "IT" in html


def test_tree_queries_do_not_grow_with_the_tree(tenants, client_for):
    client = client_for(tenants.helios_admin)
    client.get(LIST)  # warm up session and caches

    def queries():
        with CaptureQueriesContext(connection) as captured:
            assert client.get(LIST).status_code == 200
        return len(captured)

    before = queries()
    parent = tenants.sunfix
    for index in range(8):
        parent = CompanyFactory(superior=parent, name=f"Deep {index}")
        UserFactory(company=parent, role=Role.OWNER)
    assert queries() == before


def test_search_keeps_the_ancestors_of_matches(tenants, client_for):
    CompanyFactory(superior=tenants.helios, name="Solare Veneto")
    CompanyFactory(superior=tenants.sunfix, name="SunFix Bayern")
    response = client_for(tenants.helios_admin).get(LIST, {"q": "bayern"})
    assert tree_names(response.context["nodes"]) == [
        (0, "Helios Distribution", False),
        (1, "SunFix Installers", False),
        (2, "SunFix Bayern", True),
    ]
    assert b"Solare" not in response.content


def test_search_only_finds_visible_companies(tenants, client_for):
    response = client_for(tenants.sunfix_admin).get(LIST, {"q": "helios"})
    assert response.context["nodes"] == []
    assert "No company matches" in response.content.decode()


def test_htmx_search_renders_only_the_tree(tenants, client_for):
    response = client_for(tenants.helios_admin).get(LIST, {"q": "sunfix"}, headers=HTMX_TREE)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="company-tree">')
    assert "<html" not in html and "SunFix Installers" in html
    assert "HX-Request" in response["Vary"]


def test_a_company_opens_its_page_from_the_tree(tenants, client_for):
    response = client_for(tenants.helios_admin).get(LIST)
    assert detail(tenants.sunfix).encode() in response.content


# --- Add a company (§5.1.1) -------------------------------------------------------------------


def add_data(superior, **overrides):
    data = {
        "type": CompanyType.INSTALLER,
        "superior": superior.pk,
        "name": "ChintEurope",
        "country": "IT",
        "description": "ChintEuropeTest",
    }
    return {**data, **overrides}


def test_add_form_defaults_to_the_users_company(tenants, client_for):
    form = client_for(tenants.helios_admin).get(ADD).context["form"]
    assert form["superior"].value() == tenants.helios.pk
    assert set(form.fields["superior"].queryset) == {tenants.helios, tenants.sunfix}


def test_add_form_offers_no_owner_company_as_superior(tenants, client_for):
    owner_company = CompanyFactory(superior=tenants.sunfix, type=CompanyType.OWNER)
    form = client_for(tenants.helios_admin).get(ADD).context["form"]
    assert owner_company not in form.fields["superior"].queryset


def test_add_a_distributor_under_a_distributor(tenants, client_for):
    data = add_data(tenants.helios, type=CompanyType.DISTRIBUTOR)
    response = client_for(tenants.helios_admin).post(ADD, data, follow=True)
    company = Company.objects.get(name="ChintEurope")
    assert response.redirect_chain[-1][0] == detail(company)
    assert company.type == CompanyType.DISTRIBUTOR
    assert company.superior == tenants.helios
    assert company.is_below(tenants.helios)
    assert (company.country.code, company.description) == ("IT", "ChintEuropeTest")
    assert "has been added" in response.content.decode()


def test_om_adds_an_installer_under_an_installer(tenants, client_for):
    response = client_for(tenants.sunfix_om).post(ADD, add_data(tenants.sunfix))
    company = Company.objects.get(name="ChintEurope")
    assert response.status_code == 302
    assert company.superior == tenants.sunfix and company.type == CompanyType.INSTALLER


def test_no_distributor_under_an_installer(tenants, client_for):
    data = add_data(tenants.sunfix, type=CompanyType.DISTRIBUTOR)
    response = client_for(tenants.helios_admin).post(ADD, data)
    assert response.status_code == 200
    assert "A distributor can only be added under" in response.context["form"].errors["superior"][0]
    assert not Company.objects.filter(name="ChintEurope").exists()


def test_an_installer_company_only_offers_installers(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    form = client.get(ADD).context["form"]
    assert [value for value, _ in form.fields["type"].choices] == [CompanyType.INSTALLER]
    assert form["type"].value() == CompanyType.INSTALLER
    response = client.post(ADD, add_data(tenants.sunfix, type=CompanyType.DISTRIBUTOR))
    assert "type" in response.context["form"].errors
    assert not Company.objects.filter(name="ChintEurope").exists()


def test_a_foreign_superior_posted_by_hand_is_refused(tenants, client_for):
    response = client_for(tenants.nordlicht_admin).post(ADD, add_data(tenants.helios))
    assert response.status_code == 200
    assert "superior" in response.context["form"].errors
    assert not Company.objects.filter(name="ChintEurope").exists()


def test_a_superior_above_the_user_is_refused(tenants, client_for):
    response = client_for(tenants.sunfix_admin).post(ADD, add_data(tenants.helios))
    assert "superior" in response.context["form"].errors
    assert not Company.objects.filter(name="ChintEurope").exists()


def test_the_platform_type_cannot_be_posted(tenants, client_for):
    data = add_data(tenants.helios, type=CompanyType.PLATFORM)
    response = client_for(tenants.helios_admin).post(ADD, data)
    assert "type" in response.context["form"].errors


def test_missing_fields_are_reported(tenants, client_for):
    response = client_for(tenants.helios_admin).post(ADD, {"superior": tenants.helios.pk})
    errors = response.context["form"].errors
    assert {"type", "name", "country"} <= set(errors)
    assert "description" not in errors


# --- The company page and its edit form (§5.1.2) ----------------------------------------------


def test_company_page_shows_the_information(tenants, client_for):
    response = client_for(tenants.helios_admin).get(detail(tenants.sunfix))
    html = response.content.decode()
    assert response.status_code == 200
    assert tenants.sunfix.access_code in html
    assert "enter this code" in html
    assert "Helios Distribution" in html  # the superior
    assert "Company information" in html and "User management" in html


def test_a_foreign_company_answers_404(tenants, client_for):
    assert client_for(tenants.nordlicht_admin).get(detail(tenants.sunfix)).status_code == 404
    assert client_for(tenants.sunfix_admin).get(detail(tenants.helios)).status_code == 404


def edit_data(**overrides):
    data = {
        "name": "SunFix GmbH",
        "country": "AT",
        "address": "Ringstraße 1, Wien",
        "description": "Installer for Austria",
    }
    return {**data, **overrides}


def test_edit_a_company(tenants, client_for):
    response = client_for(tenants.sunfix_om).post(detail(tenants.sunfix), edit_data(), follow=True)
    tenants.sunfix.refresh_from_db()
    assert response.redirect_chain[-1][0] == detail(tenants.sunfix)
    assert tenants.sunfix.name == "SunFix GmbH"
    assert tenants.sunfix.country.code == "AT"
    assert tenants.sunfix.address == "Ringstraße 1, Wien"
    assert tenants.sunfix.description == "Installer for Austria"
    assert "has been saved" in response.content.decode()


def test_edit_requires_a_name(tenants, client_for):
    response = client_for(tenants.sunfix_admin).post(detail(tenants.sunfix), edit_data(name=""))
    assert "name" in response.context["form"].errors
    tenants.sunfix.refresh_from_db()
    assert tenants.sunfix.name == "SunFix Installers"


def test_upload_and_remove_a_logo(tenants, client_for):
    client = client_for(tenants.sunfix_admin)
    response = client.post(detail(tenants.sunfix), edit_data(logo=png()))
    assert response.status_code == 302
    tenants.sunfix.refresh_from_db()
    stored = tenants.sunfix.logo.name
    assert stored.startswith("logos/")
    assert tenants.sunfix.logo.storage.exists(stored)

    client.post(detail(tenants.sunfix), edit_data(remove_logo="on"))
    tenants.sunfix.refresh_from_db()
    assert not tenants.sunfix.logo


def test_a_replaced_logo_is_removed_from_storage(
    tenants, client_for, django_capture_on_commit_callbacks
):
    client = client_for(tenants.sunfix_admin)
    client.post(detail(tenants.sunfix), edit_data(logo=png()))
    tenants.sunfix.refresh_from_db()
    first = tenants.sunfix.logo.name
    with django_capture_on_commit_callbacks(execute=True):
        client.post(detail(tenants.sunfix), edit_data(logo=png((48, 48))))
    tenants.sunfix.refresh_from_db()
    assert tenants.sunfix.logo.name != first
    assert not tenants.sunfix.logo.storage.exists(first)
    assert tenants.sunfix.logo.storage.exists(tenants.sunfix.logo.name)


def test_an_oversized_logo_is_refused(tenants, client_for, settings):
    settings.LOGO_MAX_BYTES = 1024
    response = client_for(tenants.sunfix_admin).post(
        detail(tenants.sunfix), edit_data(logo=png((96, 96), noise=True))
    )
    assert response.status_code == 200
    assert "too large" in response.context["form"].errors["logo"][0]
    tenants.sunfix.refresh_from_db()
    assert not tenants.sunfix.logo and tenants.sunfix.name == "SunFix Installers"


def test_a_logo_that_is_not_an_image_is_refused(tenants, client_for):
    fake = io.BytesIO(b"<svg xmlns='http://www.w3.org/2000/svg'></svg>")
    fake.name = "logo.png"
    response = client_for(tenants.sunfix_admin).post(detail(tenants.sunfix), edit_data(logo=fake))
    assert response.status_code == 200
    assert "logo" in response.context["form"].errors
    tenants.sunfix.refresh_from_db()
    assert not tenants.sunfix.logo


def test_a_foreign_company_cannot_be_edited(tenants, client_for):
    response = client_for(tenants.nordlicht_admin).post(detail(tenants.sunfix), edit_data())
    assert response.status_code == 404
    tenants.sunfix.refresh_from_db()
    assert tenants.sunfix.name == "SunFix Installers"


# --- Delete a company (§5.1.3) ----------------------------------------------------------------


def test_admin_deletes_an_empty_company(tenants, client_for):
    empty = CompanyFactory(superior=tenants.sunfix, name="Empty Installer")
    response = client_for(tenants.helios_admin).post(delete(empty), follow=True)
    assert response.redirect_chain[-1][0] == LIST
    assert not Company.objects.filter(pk=empty.pk).exists()
    assert "has been deleted" in response.content.decode()


def test_delete_is_refused_while_the_company_has_users(tenants, client_for):
    company = CompanyFactory(superior=tenants.helios, name="Busy Installer")
    UserFactory(company=company)
    response = client_for(tenants.helios_admin).post(delete(company), follow=True)
    assert response.redirect_chain[-1][0] == detail(company)
    assert "It still has 1 user." in response.content.decode()
    assert Company.objects.filter(pk=company.pk).exists()


def test_delete_is_refused_while_the_company_has_sub_companies(tenants, client_for):
    parent = CompanyFactory(superior=tenants.helios, name="Parent Installer")
    CompanyFactory(superior=parent, name="Child Installer")
    response = client_for(tenants.helios_admin).post(delete(parent), follow=True)
    html = response.content.decode()
    assert response.redirect_chain[-1][0] == detail(parent)
    assert "cannot be deleted" in html and "It still has 1 sub-company." in html
    assert Company.objects.filter(pk=parent.pk).exists()


def test_every_reason_is_given(tenants):
    CompanyFactory(superior=tenants.sunfix)
    assert company_delete_blockers(tenants.sunfix) == [
        "It still has 3 users.",
        "It still has 1 sub-company.",
    ]


def test_sites_also_block_the_deletion(tenants, monkeypatch):
    """Once the sites feature has a pv_sites.Site model, a company with sites stays."""

    class Sites:
        def filter(self, company):
            return self if company == tenants.sunfix else type(self)()

        def count(self):
            return 2

    class FakeSite:
        _default_manager = Sites()

    monkeypatch.setattr("accounts.services._site_model", lambda: FakeSite)
    assert "It still has 2 sites." in company_delete_blockers(tenants.sunfix)


def test_the_confirmation_shows_the_reasons_before_posting(tenants, client_for):
    parent = CompanyFactory(superior=tenants.helios, name="Parent Installer")
    CompanyFactory(superior=parent, name="Child Installer")
    response = client_for(tenants.helios_admin).get(delete(parent))
    html = response.content.decode()
    assert "It still has 1 sub-company." in html
    assert "disabled" in html


def test_om_cannot_delete_a_company(tenants, client_for):
    empty = CompanyFactory(superior=tenants.sunfix)
    assert client_for(tenants.helios_om).post(delete(empty)).status_code == 403
    assert Company.objects.filter(pk=empty.pk).exists()
    page = client_for(tenants.helios_om).get(detail(empty)).content.decode()
    assert "Delete Company" not in page


def test_nobody_deletes_their_own_company(tenants, client_for):
    assert client_for(tenants.sunfix_admin).post(delete(tenants.sunfix)).status_code == 403


def test_a_foreign_company_cannot_be_deleted(tenants, client_for):
    empty = CompanyFactory(superior=tenants.sunfix)
    assert client_for(tenants.nordlicht_admin).post(delete(empty)).status_code == 404
    assert Company.objects.filter(pk=empty.pk).exists()


def test_htmx_confirmation_renders_the_dialog_only(tenants, client_for):
    empty = CompanyFactory(superior=tenants.sunfix)
    response = client_for(tenants.helios_admin).get(
        delete(empty), headers={"HX-Request": "true", "HX-Target": "action-dialog"}
    )
    html = response.content.decode()
    assert html.lstrip().startswith("<form") and "<html" not in html
    assert 'data-bs-dismiss="modal"' in html
