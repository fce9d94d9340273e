from django.apps import AppConfig


class MatricloudConfig(AppConfig):
    name = "matricloud"
    verbose_name = "MatriCloud"
