"""Maintenance (guide §8): the operations log of remote operations on devices."""

from django.urls import path

from gateways import views

app_name = "maintenance"

urlpatterns = [
    path("operations/", views.OperationListView.as_view(), name="operations"),
    path("operations/download/", views.OperationCSVView.as_view(), name="operations_csv"),
    path("operations/<int:pk>/", views.OperationDetailView.as_view(), name="operation"),
    path("operations/<int:pk>/state/", views.OperationStateView.as_view(), name="operation_state"),
]
