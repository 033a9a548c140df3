# NotifyHub production image: one image for the web process, the Celery workers and beat.
# One process per container; whatever runs the containers restarts one that exits (a crash, an
# OOM kill): deploy/compose.yaml declares `restart: unless-stopped` for each Procfile process
# (with PostgreSQL, and Redis with AOF persistence); on Kubernetes a Deployment's pods restart
# by default (restartPolicy: Always); under systemd use Restart=always (docs/operations.md
# "Supervision").
#
#   docker build -t notifyhub .
#   docker compose -f deploy/compose.yaml --env-file prod.env up -d     # the whole stack
#
# or one container per process by hand (always with a restart policy):
#   docker run --rm --env-file prod.env notifyhub sh -c \
#       "python manage.py migrate --noinput && python manage.py sync_roles"
#   docker run -d --restart unless-stopped -p 8000:8000 --env-file prod.env notifyhub   # web
#   docker run -d --restart unless-stopped --env-file prod.env notifyhub \
#       celery -A celery_app worker -Q critical,high -n priority@%h --concurrency 2 --loglevel INFO
#   docker run -d --restart unless-stopped --env-file prod.env notifyhub \
#       celery -A celery_app worker -Q maintenance,normal,low -n bulk@%h --concurrency 2 --loglevel INFO
#   docker run -d --restart unless-stopped --env-file prod.env notifyhub \
#       celery -A celery_app worker -Q webhooks -n webhooks@%h --concurrency 4 --loglevel INFO
#   docker run -d --restart unless-stopped -p 8001:8001 --ulimit nofile=65536:65536 \
#       --env-file prod.env notifyhub python -m apps.stream --host 0.0.0.0 --port 8001  # stream
#   docker run -d --restart unless-stopped --env-file prod.env notifyhub \
#       celery -A celery_app beat --scheduler django_celery_beat.schedulers:DatabaseScheduler --loglevel INFO
#
# prod.env needs at least DATABASE_URL, REDIS_URL, SECRET_KEY, ALLOWED_HOSTS, SENDGRID_API_KEY
# and SENDGRID_WEBHOOK_PUBLIC_KEY (see notifyhub/settings/production.py).
# Extra gunicorn flags can be given with GUNICORN_CMD_ARGS (e.g. "--workers 4").
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=notifyhub.settings.production

WORKDIR /app

# Dependencies first, so code changes do not invalidate this layer.
# (psycopg[binary], cryptography etc. ship wheels: no compiler or libpq needed.)
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# collectstatic imports the production settings, which insist on real secrets; build-only
# placeholders satisfy them here and are not kept in the image.
RUN SECRET_KEY=collectstatic-build-only \
    SENDGRID_API_KEY=collectstatic-build-only \
    SENDGRID_WEBHOOK_PUBLIC_KEY=collectstatic-build-only \
    python manage.py collectstatic --noinput -v0

# Code stays owned by root (read-only for the app); the app runs unprivileged.
RUN useradd --system --uid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin app
USER app

EXPOSE 8000 8001
CMD ["gunicorn", "-c", "notifyhub/gunicorn.conf.py", "notifyhub.wsgi:application", "--bind", "0.0.0.0:8000"]
