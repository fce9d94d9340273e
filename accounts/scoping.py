"""Visibility, in one place.

A user sees their own company and every company below it in the tree. Owners (common users)
see only what has been granted to them: their own user row, their own company, and the objects
granted through django-guardian. Every queryset a view touches goes through `visible_to`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models

if TYPE_CHECKING:
    from accounts.models import User


class ScopedQuerySet(models.QuerySet):
    """A queryset that knows how to restrict itself to what one user may see.

    `company_path` is the lookup from this model to its Company ("" for Company itself).
    Models whose rows owners may see through grants name the guardian permission in
    `owner_grant_permission` (e.g. "pv_sites.view_site").
    """

    company_path: str = "company"
    owner_grant_permission: str | None = None

    def visible_to(self, user: User) -> ScopedQuerySet:
        if user is None or not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_superuser:
            return self
        if user.is_owner:
            return self.visible_to_owner(user)
        if user.company_id is None:
            return self.none()
        prefix = f"{self.company_path}__" if self.company_path else ""
        return self.filter(**{f"{prefix}path__startswith": user.company.path})

    def visible_to_owner(self, user: User) -> ScopedQuerySet:
        """Owners see only grants; models without grants show them nothing."""
        if self.owner_grant_permission is None:
            return self.none()
        from guardian.shortcuts import get_objects_for_user

        return get_objects_for_user(
            user,
            self.owner_grant_permission,
            klass=self,
            accept_global_perms=False,
            with_superuser=False,
        )

    def in_company_tree(self, company) -> ScopedQuerySet:
        """Rows of this company and every company below it."""
        prefix = f"{self.company_path}__" if self.company_path else ""
        return self.filter(**{f"{prefix}path__startswith": company.path})


def is_visible(user: User, obj: models.Model) -> bool:
    """True when `obj` is inside `user`'s scope."""
    queryset = type(obj)._default_manager.all()
    if not hasattr(queryset, "visible_to"):
        raise TypeError(f"{type(obj).__name__} has no scoped queryset")
    return queryset.visible_to(user).filter(pk=obj.pk).exists()
