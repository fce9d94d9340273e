"""Firmware release (guide §7.1)."""

urlpatterns: list = []
