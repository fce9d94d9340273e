"""Maintenance (guide §8): the operations log of remote operations on devices, and the
register parameters of inverters (guide §6.2.6, §6.4.2.6)."""

from django.urls import path

from maintenance import parameter_views, views

app_name = "maintenance"

urlpatterns = [
    path("operations/", views.OperationListView.as_view(), name="operations"),
    path("operations/download/", views.OperationCSVView.as_view(), name="operations_csv"),
    path("operations/<int:pk>/", views.OperationDetailView.as_view(), name="operation"),
    path("operations/<int:pk>/state/", views.OperationStateView.as_view(), name="operation_state"),
    path("parameters/", parameter_views.ParameterPageView.as_view(), name="parameters"),
    path(
        "parameters/<int:pk>/read/",
        parameter_views.ParameterReadView.as_view(),
        name="parameter_read",
    ),
    path(
        "parameters/<int:pk>/write/<slug:key>/",
        parameter_views.ParameterWriteView.as_view(),
        name="parameter_write",
    ),
    path(
        "parameters/operations/<int:pk>/<slug:key>/",
        parameter_views.ParameterValueView.as_view(),
        name="parameter_value",
    ),
]
