"""Firmware upgrade tasks (guide §7.2)."""

from django.urls import path

from upgrades.views.task_add import TaskAddView
from upgrades.views.tasks import (
    PolicyView,
    TaskActionView,
    TaskDeleteView,
    TaskDetailView,
    TaskListView,
)

urlpatterns = [
    path("tasks/", TaskListView.as_view(), name="tasks"),
    path("tasks/add/", TaskAddView.as_view(), name="task_add"),
    path("tasks/approval/", PolicyView.as_view(), name="policy"),
    path("tasks/<int:pk>/", TaskDetailView.as_view(), name="task_detail"),
    path("tasks/<int:pk>/delete/", TaskDeleteView.as_view(), name="task_delete"),
    path(
        "tasks/<int:pk>/<str:action>/",
        TaskActionView.as_view(),
        name="task_action",
    ),
]
