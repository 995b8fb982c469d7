from django.contrib import admin
from django.urls import path

from demo_store.store import views

urlpatterns = [
    path("", views.catalogue, name="catalogue"),
    path("ebooks/<int:pk>/", views.ebook, name="ebook"),
    path("ebooks/<int:pk>/buy/", views.buy, name="buy"),
    path("purchases/<int:pk>/", views.purchase, name="purchase"),
    path("statistics/", views.statistics, name="statistics"),
    path("admin/", admin.site.urls),
]
