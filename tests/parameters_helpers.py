"""What the tests of the parameters panel share: Maintenance → Parameters
(test_parameters_page.py) and the Settings tab of a site that mounts it (test_site_settings.py)."""

from maintenance.models import OperationKind, OperationState, RemoteOperation

TH = "ECH10K-TH-EU"
HTMX_TABLE = {"HX-Request": "true", "HX-Target": "parameter-table"}
HTMX_DIALOG = {"HX-Request": "true", "HX-Target": "parameter-dialog"}
# A value cell of an operation still running fetches itself again.
POLLING = 'hx-trigger="every 1s"'


def names(response):
    """The names of the parameters the panel lists, in order."""
    return [point.name for point, _cell in response.context["rows"]]


def assert_queued_read(response, inverter, user, key="grid_power_kw"):
    """The answer to a Read of `key` is its value cell, polling the one READ operation it
    queued on `inverter` for `user`. Returns the operation and the cell's HTML."""
    assert response.status_code == 200, response.content
    operation = RemoteOperation.objects.get()
    assert operation.kind == OperationKind.READ and operation.state == OperationState.QUEUED
    assert operation.inverter == inverter and operation.user == user
    assert operation.request["keys"] == [key]
    html = response.content.decode()
    assert html.lstrip().startswith(f'<div id="value-{key}"') and POLLING in html
    return operation, html
