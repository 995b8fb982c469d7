from django.contrib import admin

from .models import Buyer, DailyStatistics, Ebook, Purchase, Seller, SentEmail

admin.site.register([Seller, Buyer, DailyStatistics])


@admin.register(Ebook)
class EbookAdmin(admin.ModelAdmin):
    list_display = ["title", "seller", "price", "commission_rate"]


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    list_display = ["id", "ebook", "buyer", "price", "commission", "created_at"]


@admin.register(SentEmail)
class SentEmailAdmin(admin.ModelAdmin):
    list_display = ["purchase", "kind", "to", "sent_at"]
