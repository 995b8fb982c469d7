from django.apps import AppConfig


class StoreConfig(AppConfig):
    name = "demo_store.store"
    label = "store"
    verbose_name = "Ebook store"
