"""The list block (ui/): columns a user chooses and keeps, downloads of exactly the selected
rows, sorting and pagination that keep the query string, empty states, on Account → Company
and User management."""

import csv
import io
import re
from html import unescape
from pathlib import Path

import django_filters
import pytest
from django.db.models.signals import post_init
from django.http import StreamingHttpResponse
from django.test import RequestFactory
from django.urls import reverse
from django_htmx.middleware import HtmxDetails
from openpyxl import load_workbook

from accounts.models import Company, Role, User
from accounts.tables import CompanyTable, UserTable
from accounts.views.users import CompanyUsersView
from tests import a11y
from tests.browser import CHROMIUM, sign_in
from tests.factories import CompanyFactory, UserFactory
from ui.models import TablePreference
from ui.tables import chosen_columns

pytestmark = pytest.mark.django_db

COMPANIES = reverse("accounts:company_list")
HTMX_USERS = {"HX-Request": "true", "HX-Target": "user-table"}


def users_url(company):
    return reverse("accounts:company_users", args=[company.pk])


def headers(response):
    """The column headers of the user table on a page."""
    return [column.name for column in response.context["table"].columns]


def download(client, url, params):
    response = client.get(url, params)
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse)
    return response, b"".join(response.streaming_content)


def csv_rows(body):
    return list(csv.reader(io.StringIO(body.decode("utf-8"))))


def xlsx_rows(body):
    sheet = load_workbook(io.BytesIO(body), read_only=True).active
    return [
        ["" if value is None else value for value in row]
        for row in sheet.iter_rows(values_only=True)
    ]


@pytest.fixture
def members(tenants):
    """25 more users at SunFix: more than one page of the user table (20 rows)."""
    return [
        UserFactory(
            company=tenants.sunfix,
            role=Role.OWNER,
            username=f"Member {index:02d}",
            email=f"member{index:02d}@sunfix.example",
            description="night shift" if index % 3 == 0 else "",
        )
        for index in range(25)
    ]


# --- The column chooser ("Optional") ----------------------------------------------------------


def test_the_table_starts_with_its_default_columns(tenants, client_for):
    response = client_for(tenants.helios_admin).get(users_url(tenants.sunfix))
    assert headers(response) == ["username", *UserTable.default_columns(), "operations"]
    html = response.content.decode()
    # The chooser offers every optional column with a label, the defaults ticked.
    assert 'name="columns" value="last_login" id="user-table-column-last_login">' in html
    assert re.search(r'value="email" id="user-table-column-email" checked', html)
    assert '<label class="form-check-label text-nowrap" for="user-table-column-email">' in html


def test_a_choice_is_kept_for_the_user_and_the_table(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    url = users_url(tenants.sunfix)
    response = admin.post(url + "?q=sun", {"columns": ["email", "last_login"]})
    assert response.status_code == 302 and response["Location"] == url + "?q=sun"

    assert headers(admin.get(url)) == ["username", "email", "last_login", "operations"]
    # After signing out and in again (a new session), the choice still applies.
    again = client_for(tenants.helios_admin)
    assert headers(again.get(url)) == ["username", "email", "last_login", "operations"]
    # It is the same table on another company's page.
    assert headers(admin.get(users_url(tenants.helios))) == [
        "username",
        "email",
        "last_login",
        "operations",
    ]


def test_another_user_keeps_the_default_columns(tenants, client_for):
    client_for(tenants.helios_admin).post(users_url(tenants.sunfix), {"columns": ["email"]})
    response = client_for(tenants.sunfix_admin).get(users_url(tenants.sunfix))
    assert headers(response) == ["username", *UserTable.default_columns(), "operations"]


def test_another_table_keeps_its_own_columns(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    admin.post(users_url(tenants.sunfix), {"columns": ["email"]})
    tree = admin.get(COMPANIES)
    assert tree.context["table"].visible_columns == ["name", *CompanyTable.default_columns()]
    assert "2 users" in tree.content.decode()
    # … and a choice on the company tree leaves the user table alone.
    admin.post(COMPANIES, {"columns": ["created_at"]})
    tree = admin.get(COMPANIES).content.decode()
    assert "2 users" not in tree and "Distributor" not in tree
    assert headers(admin.get(users_url(tenants.sunfix))) == ["username", "email", "operations"]
    assert chosen_columns(tenants.helios_admin, CompanyTable) == ["created_at"]
    assert chosen_columns(tenants.helios_admin, UserTable) == ["email"]


def test_the_chooser_answers_htmx_with_the_table_and_fresh_actions(tenants, client_for):
    url = users_url(tenants.sunfix) + "?q=sunfix&sort=-email"
    response = client_for(tenants.helios_admin).post(url, {"columns": ["role"]}, headers=HTMX_USERS)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="user-table"') and "<html" not in html
    assert headers(response) == ["username", "role", "operations"]
    # The actions come along out of band, still for the same query.
    assert 'id="user-table-actions"' in html and 'hx-swap-oob="true"' in html
    assert "export=csv" in html and "q=sunfix" in html


def test_reset_goes_back_to_the_default_columns(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    url = users_url(tenants.sunfix)
    admin.post(url, {"columns": ["email"]})
    admin.post(url, {"columns": ["email"], "reset": "1"})
    assert not TablePreference.objects.filter(user=tenants.helios_admin).exists()
    assert headers(admin.get(url)) == ["username", *UserTable.default_columns(), "operations"]


def test_unchecking_every_optional_column_leaves_the_required_ones(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    admin.post(users_url(tenants.sunfix), {})
    assert headers(admin.get(users_url(tenants.sunfix))) == ["username", "operations"]


def test_an_unknown_column_is_refused(tenants, client_for):
    response = client_for(tenants.helios_admin).post(
        users_url(tenants.sunfix), {"columns": ["password"]}
    )
    assert response.status_code == 400
    assert not TablePreference.objects.exists()


def test_a_column_the_table_no_longer_has_is_ignored(tenants, client_for):
    TablePreference.objects.create(
        user=tenants.helios_admin, table="UserTable", columns=["gone", "email"]
    )
    response = client_for(tenants.helios_admin).get(users_url(tenants.sunfix))
    assert headers(response) == ["username", "email", "operations"]


def test_choosing_columns_needs_the_right_to_see_the_list(tenants, client_for):
    assert client_for(tenants.owner).post(users_url(tenants.sunfix), {}).status_code == 403
    foreign = client_for(tenants.nordlicht_admin).post(users_url(tenants.sunfix), {})
    assert foreign.status_code == 404
    assert client_for(None).post(users_url(tenants.sunfix), {}).status_code == 302
    assert not TablePreference.objects.exists()


# --- Downloads --------------------------------------------------------------------------------


def test_csv_download_is_exactly_the_filtered_and_sorted_rows_of_every_page(
    tenants, client_for, members
):
    params = {"q": "member", "sort": "-username", "page": "2"}
    response, body = download(
        client_for(tenants.helios_admin), users_url(tenants.sunfix), {**params, "export": "csv"}
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="users-sunfix-installers-\d{8}\.csv"',
        response["Content-Disposition"],
    )
    rows = csv_rows(body)
    assert rows[0] == [
        "Username",
        "Email",
        "Role",
        "Supervisor",
        "Country",
        "Description",
        "Created",
    ]
    expected = list(
        User.objects.filter(company=tenants.sunfix, username__icontains="member")
        .order_by("-username")
        .values_list("username", flat=True)
    )
    assert len(expected) == 25
    assert [row[0] for row in rows[1:]] == expected


def test_xlsx_download_is_exactly_the_filtered_rows(tenants, client_for, members):
    response, body = download(
        client_for(tenants.helios_admin),
        users_url(tenants.sunfix),
        {"q": "night", "export": "xlsx"},
    )
    assert response["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    rows = xlsx_rows(body)
    assert rows[0][:3] == ["Username", "Email", "Role"]
    expected = list(
        User.objects.filter(company=tenants.sunfix, description__icontains="night")
        .order_by("username")
        .values_list("username", "email")
    )
    assert [tuple(row[:2]) for row in rows[1:]] == expected
    assert {row[2] for row in rows[1:]} == {"Owner (common user)"}


def test_downloads_have_the_columns_the_user_sees(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    url = users_url(tenants.sunfix)
    admin.post(url, {"columns": ["email", "time_zone"]})
    for fmt, parse in (("csv", csv_rows), ("xlsx", xlsx_rows)):
        _response, body = download(admin, url, {"export": fmt})
        rows = parse(body)
        assert rows[0] == ["Username", "Email", "Time zone"]
        assert rows[1] == ["Olivia Owner", "owner@sunfix.example", "UTC"]


def test_cells_a_spreadsheet_would_run_as_formulas_stay_text(tenants, client_for):
    UserFactory(company=tenants.sunfix, username="Eve", description='=HYPERLINK("x")')
    admin = client_for(tenants.helios_admin)
    url = users_url(tenants.sunfix)
    _response, body = download(admin, url, {"q": "Eve", "export": "csv"})
    assert csv_rows(body)[1][5] == '\'=HYPERLINK("x")'
    _response, body = download(admin, url, {"q": "Eve", "export": "xlsx"})
    sheet = load_workbook(io.BytesIO(body)).active
    cell = sheet.cell(row=2, column=6)
    assert (cell.value, cell.data_type) == ('=HYPERLINK("x")', "s")


def test_the_download_streams_in_chunks(tenants, client_for, members, monkeypatch):
    """40 rows in chunks of 5: reading the first rows builds one chunk of users (and their
    supervisors), not all of them, and the whole download is a handful of queries."""
    monkeypatch.setattr(CompanyUsersView, "export_chunk_size", 5)
    client = client_for(tenants.helios_admin)
    built = []

    def count(sender, instance, **kwargs):
        built.append(instance)

    post_init.connect(count, sender=User)
    try:
        response = client.get(users_url(tenants.sunfix), {"export": "csv"})
        assert isinstance(response, StreamingHttpResponse)
        built.clear()  # the users of the request itself (the signed-in user)
        stream = iter(response.streaming_content)
        next(stream), next(stream)  # the header and the first row
        assert 0 < len(built) <= 2 * 5
        rest = list(stream)
    finally:
        post_init.disconnect(count, sender=User)
    assert len(rest) == 28 - 1
    assert len({user.pk for user in built}) >= 28


def test_the_download_takes_a_fixed_number_of_queries(
    tenants, client_for, members, django_assert_max_num_queries
):
    client = client_for(tenants.helios_admin)
    client.get(users_url(tenants.sunfix))  # session and caches warm
    with django_assert_max_num_queries(12):
        _response, body = download(client, users_url(tenants.sunfix), {"export": "csv"})
    assert len(csv_rows(body)) == 1 + 28


def test_company_download_lists_the_matches_of_the_search(tenants, client_for):
    CompanyFactory(superior=tenants.sunfix, name="SunFix Bayern", country="DE")
    admin = client_for(tenants.helios_admin)
    _response, body = download(admin, COMPANIES, {"export": "csv"})
    rows = csv_rows(body)
    assert rows[0] == [
        "Company name",
        "Company type",
        "Superior",
        "Country/region",
        "Users",
        "Sub-companies",
    ]
    names = [row[0] for row in rows[1:]]
    expected = Company.objects.visible_to(tenants.helios_admin).order_by("path")
    assert names == [company.name for company in expected]
    assert rows[1][:6] == ["Helios Distribution", "Distributor", "MatriCloud", "IT", "2", "1"]

    _response, body = download(admin, COMPANIES, {"q": "sunfix", "export": "xlsx"})
    rows = xlsx_rows(body)
    assert [row[0] for row in rows[1:]] == ["SunFix Installers", "SunFix Bayern"]
    assert rows[1][4:6] == [3, 1]  # counts stay numbers in a spreadsheet


def test_a_refused_search_or_an_unknown_format_is_not_downloaded(tenants, client_for):
    admin = client_for(tenants.helios_admin)
    refused = admin.get(users_url(tenants.sunfix), {"q": "\x00", "export": "csv"})
    assert refused.status_code == 400
    assert "Null characters are not allowed." in refused.content.decode()
    assert admin.get(COMPANIES, {"export": "pdf"}).status_code == 400


def test_a_download_is_checked_like_the_page(tenants, client_for):
    params = {"export": "csv"}
    assert client_for(tenants.owner).get(users_url(tenants.sunfix), params).status_code == 403
    foreign = client_for(tenants.nordlicht_admin).get(users_url(tenants.sunfix), params)
    assert foreign.status_code == 404
    assert client_for(None).get(users_url(tenants.sunfix), params).status_code == 302
    # A foreign administrator's company download holds only their own tree.
    _response, body = download(client_for(tenants.nordlicht_admin), COMPANIES, params)
    assert [row[0] for row in csv_rows(body)[1:]] == ["Nordlicht Energie"]


# --- Sorting, pagination and the query string -------------------------------------------------


def test_sorting_and_pagination_keep_the_search_in_the_query_string(tenants, client_for, members):
    response = client_for(tenants.helios_admin).get(
        users_url(tenants.sunfix), {"q": "member", "sort": "-username"}
    )
    html = unescape(response.content.decode())
    page_links = set(re.findall(r'class="page-link" href="\?([^"]+)"', html))
    assert page_links, "a second page is offered"
    for query in page_links:
        assert "q=member" in query and "sort=-username" in query and "page=2" in query
    sort_links = re.findall(r'<th [^>]*>\s*<a href="\?([^"]+)"', html)
    assert sort_links and all("q=member" in query for query in sort_links)
    assert 'aria-sort="descending"' in html
    downloads = re.findall(r'href="([^"]*export=[^"]*)"', html)
    assert len(downloads) == 2
    for link in downloads:
        assert "q=member" in link and "sort=-username" in link and "page=" not in link
    # The search box keeps the sort when it searches again.
    assert '<input type="hidden" name="sort" value="-username">' in html


def test_second_page_over_htmx_keeps_the_filters(tenants, client_for, members):
    client = client_for(tenants.helios_admin)
    response = client.get(
        users_url(tenants.sunfix),
        {"q": "member", "sort": "username", "page": "2"},
        headers=HTMX_USERS,
    )
    html = unescape(response.content.decode())
    assert "21–25 of 25" in html
    assert [row.record.username for row in response.context["table"].paginated_rows] == [
        f"Member {index:02d}" for index in range(20, 25)
    ]
    assert "?q=member&sort=username&page=1" in html


def test_disabled_pagination_items_are_not_links_and_carry_no_labels(tenants, client_for, members):
    html = client_for(tenants.helios_admin).get(users_url(tenants.sunfix)).content.decode()
    disabled = re.findall(r'<li class="page-item disabled">(.*?)</li>', html)
    assert disabled, "the first page has no previous page"
    for item in disabled:
        assert "<a" not in item and "aria-label" not in item
    assert '<span class="page-link" aria-current="page">1</span>' in html


# --- Empty states -----------------------------------------------------------------------------


def test_an_empty_search_says_why_and_offers_all_rows(tenants, client_for):
    response = client_for(tenants.helios_admin).get(users_url(tenants.sunfix), {"q": "nobody"})
    html = response.content.decode()
    assert "No user matches “nobody”." in html
    assert f'<a href="{users_url(tenants.sunfix)}">Show all users</a>' in html


def test_an_empty_company_offers_to_add_a_user(tenants, client_for):
    empty = CompanyFactory(superior=tenants.sunfix, name="Empty Ltd")
    html = client_for(tenants.helios_admin).get(users_url(empty)).content.decode()
    assert "This company has no users yet." in html
    assert reverse("accounts:user_add", args=[empty.pk]) in html


# --- In a browser -----------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
@pytest.mark.django_db(transaction=True)
def test_a_hidden_column_stays_hidden_after_reload_and_a_new_sign_in(page, tenants, members):
    url = users_url(tenants.sunfix)
    supervisor = page.locator("#user-table th", has_text="Supervisor")
    sign_in(page, tenants.helios_admin.email)
    page.goto(url + "?page=2")
    assert supervisor.count() == 1

    page.click("#user-table-columns-toggle")
    page.get_by_label("Supervisor", exact=True).uncheck()
    page.click("#user-table-actions button:has-text('Confirm')")
    supervisor.wait_for(state="detached")
    assert page.locator("#user-table th", has_text="Email").count() == 1
    assert "21–28 of 28" in page.inner_text("#user-table")  # still on page 2
    # Focus is back on the chooser's button, whose list of columns is up to date.
    page.wait_for_function("document.activeElement?.id === 'user-table-columns-toggle'")
    assert not page.is_checked("#user-table-column-supervisor")
    a11y.check(page)  # after its transitions settle; the page fixture fails on what it finds

    page.reload()
    assert page.locator("#user-table th", has_text="Email").count() == 1
    assert supervisor.count() == 0

    page.click("#user-menu")
    page.click("button:has-text('Log out')")
    page.wait_for_url(re.compile(r"/account/login/"))
    sign_in(page, tenants.helios_admin.email)
    page.goto(url)
    assert page.locator("#user-table th", has_text="Email").count() == 1
    assert supervisor.count() == 0


# --- A list with a FilterSet on the page skeleton (ui/list.html) ------------------------------


class UserFilter(django_filters.FilterSet):
    role = django_filters.ChoiceFilter(choices=Role.choices, empty_label="All roles")

    class Meta:
        model = User
        fields = ("role",)


class FilteredUsersView(CompanyUsersView):
    filterset_class = UserFilter
    template_name = "ui/list.html"


def filtered_users(user, company, params):
    request = RequestFactory().get(users_url(company), params)
    request.user = user
    request.htmx = HtmxDetails(request)
    response = FilteredUsersView.as_view()(request, pk=company.pk)
    if hasattr(response, "render"):
        response.render()
    return response


def test_filters_search_and_sort_select_the_rows_of_page_and_download(tenants, members):
    params = {"role": Role.OWNER, "q": "member", "sort": "-email"}
    response = filtered_users(tenants.helios_admin, tenants.sunfix, params)
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert '<select name="role"' in html and 'value="member"' in html
    for query in re.findall(r'class="page-link" href="\?([^"]+)"', html):
        assert "role=owner" in query and "q=member" in query and "sort=-email" in query

    _response, body = download_view(tenants, {**params, "export": "csv"})
    expected = (
        User.objects.filter(company=tenants.sunfix, role=Role.OWNER, username__icontains="member")
        .order_by("-email")
        .values_list("username", flat=True)
    )
    assert [row[0] for row in csv_rows(body)[1:]] == list(expected)

    _response, body = download_view(tenants, {"role": Role.OM, "export": "xlsx"})
    assert [row[0] for row in xlsx_rows(body)[1:]] == ["SunFix O&M"]


def test_invalid_filters_show_their_error_and_refuse_the_download(tenants):
    response = filtered_users(tenants.helios_admin, tenants.sunfix, {"role": "pilot"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Select a valid choice." in html and "Nothing matches these filters." in html
    params = {"role": "pilot", "export": "csv"}
    assert filtered_users(tenants.helios_admin, tenants.sunfix, params).status_code == 400


def download_view(tenants, params):
    response = filtered_users(tenants.helios_admin, tenants.sunfix, params)
    assert isinstance(response, StreamingHttpResponse)
    return response, b"".join(response.streaming_content)
