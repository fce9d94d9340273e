"""Firmware upgrade tasks (guide §7.2)."""

urlpatterns: list = []
