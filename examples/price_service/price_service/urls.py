"""URL routes of the price service."""

from __future__ import annotations

from django.urls import path
from prices import views

urlpatterns = [
    path("healthz", views.healthz),
    path("price/<str:symbol>", views.price),
    path("price-raw/<str:symbol>", views.price_raw),
    path("price-redis/<str:symbol>", views.price_redis),
    path("price-swr/<str:symbol>", views.price_swr),
    path("price-cached/<str:symbol>", views.price_cached),
    path("volume/<str:symbol>", views.volume),
    path("volume-raw/<str:symbol>", views.volume_raw),
    path("stats", views.stats),
    path("stats/reset", views.reset_stats),
]
