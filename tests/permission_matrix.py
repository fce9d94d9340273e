"""The permission matrix: for one URL, every role of the own tenant and of a foreign tenant,
and the status each must get.

Own tenant = Helios (admin and O&M of Helios, the owner in SunFix below it); foreign tenant =
Nordlicht. Objects in URLs belong to the Helios tree, so a foreign user must get 404 (not 403:
a foreign object is not even acknowledged).

    assert_matrix(tenants, client_for, url, Expect(admin=200, om=200, owner=403))

`url` may be a callable taking the actor's key, so a mutating POST gets a fresh object for
every actor.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass

ACTORS = {
    "anonymous": None,
    "admin": "helios_admin",
    "om": "helios_om",
    "owner": "owner",
    "foreign_admin": "nordlicht_admin",
    "foreign_om": "nordlicht_om",
    "foreign_owner": "nordlicht_owner",
}


@dataclass
class Expect:
    admin: int = 200
    om: int = 200
    owner: int = 403
    anonymous: int = 302
    foreign_admin: int = 404
    foreign_om: int = 404
    foreign_owner: int = 404

    @classmethod
    def tenant_wide(cls, admin: int = 200, om: int = 200, owner: int = 403) -> "Expect":
        """For pages without an object in the URL: a foreign user sees their own tenant's
        version of the page, so gets the same status as the same role at home."""
        return cls(admin, om, owner, 302, admin, om, owner)


def assert_matrix(
    tenants,
    client_for,
    url: str | Callable[[str], str],
    expect: Expect,
    method: str = "get",
    data: dict | None = None,
    headers: dict | None = None,
) -> None:
    mismatches = []
    for actor, attribute in ACTORS.items():
        user = getattr(tenants, attribute) if attribute else None
        client = client_for(user)
        target = url(actor) if callable(url) else url
        response = getattr(client, method)(target, data or {}, headers=headers or {})
        wanted = asdict(expect)[actor]
        if response.status_code != wanted:
            mismatches.append(
                f"{actor}: {method.upper()} {target} → {response.status_code}, expected {wanted}"
            )
    assert not mismatches, "permission matrix mismatches:\n" + "\n".join(mismatches)
