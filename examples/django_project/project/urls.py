from django.urls import include, path

from . import views

urlpatterns = [
    path("chat/<str:model>", views.chat),
    path("_steer/", include("steer_llm_sdk.observability.integrations.django.urls")),
]
