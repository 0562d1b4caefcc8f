from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView

from campaigns import views
from campaigns.admin.mailbox import mailbox_message_view, mailbox_view
from campaigns.dashboard import system_status_view

# The dashboard's heading and the title of its browser tab ("Site administration" by default).
admin.site.index_title = "Dashboard"


def healthz(_request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/mailbox/", admin.site.admin_view(mailbox_view), name="mailbox"),
    path(
        "admin/mailbox/<str:key>/",
        admin.site.admin_view(mailbox_message_view),
        name="mailbox-message",
    ),
    path(
        "admin/system-status/",
        admin.site.admin_view(system_status_view),
        name="admin-system-status",
    ),
    path("admin/", admin.site.urls),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("m/<str:token>/", views.web_version, name="web-version"),
    path("archive/", views.archive, name="archive"),
    path("archive/<int:campaign_id>/", views.archive_message, name="archive-message"),
    path("healthz", healthz, name="healthz"),
    path("anymail/", include("campaigns.webhooks")),
]
