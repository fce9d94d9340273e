"""Factories for the tenant tree: companies and users with roles."""

import factory

from accounts.models import Company, CompanyType, Role, User

DEMO_PASSWORD = "Demo-pass1!"


class CompanyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Company

    type = CompanyType.INSTALLER
    name = factory.Sequence(lambda n: f"Company {n}")
    country = "DE"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    username = factory.Sequence(lambda n: f"User {n}")
    company = factory.SubFactory(CompanyFactory)
    role = Role.ADMIN
    password = factory.PostGenerationMethodCall("set_password", DEMO_PASSWORD)

    @factory.post_generation
    def _save_password(obj, create, extracted, **kwargs):
        if create:
            obj.save()
