"""Helpers shared by the tests of portal pages."""

import pytest
from django.utils import timezone, translation


@pytest.fixture(autouse=True)
def default_language_and_time_zone_afterwards():
    """A request leaves the user's language and time zone active in the thread; the next test
    starts from the defaults again. Import it into a test module to use it there."""
    yield
    translation.deactivate()
    timezone.deactivate()
