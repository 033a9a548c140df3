from django.contrib import admin

from .models import Recipient


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["external_id", "client", "email", "phone", "locale", "timezone", "updated_at"]
    list_filter = ["client", "locale"]
    list_select_related = ["client"]
    search_fields = ["=external_id", "=email", "=phone"]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
