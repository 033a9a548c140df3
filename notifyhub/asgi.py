import os

from django.core.asgi import get_asgi_application

from apps.core import boot, tracing

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings.local")
# Before the handler loads the middleware (Django's instrumentation adds its own); a no-op
# unless an OTEL_* exporter is configured (apps/core/tracing.py).
tracing.configure("notifyhub-api")
application = get_asgi_application()
# The URLconf and what its routes import, loaded now rather than on the first request, and
# what the boot holds kept out of the garbage collector's walks (apps/core/boot.py).
boot.warm_up()
