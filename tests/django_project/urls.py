"""URLs of the test project."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("price/<str:symbol>", views.price),
    path("cached-price/<str:symbol>", views.cached_price),
    path("acached-price/<str:symbol>", views.acached_price),
    path("items", views.items),
    path("aitems", views.aitems),
]
