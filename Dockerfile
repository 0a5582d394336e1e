# Production image: the ASGI web server, both Celery workers (inbound and platform) and beat run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SWITCHBOARD_VAR_DIR=/app/var

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

COPY . .
# collectstatic needs settings to load; these build-time values are thrown away.
RUN DJANGO_SECRET_KEY=build-only \
    FIELD_ENCRYPTION_KEYS="$(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')" \
    python manage.py collectstatic --noinput \
 && useradd --system --home /app switchboard \
 && mkdir -p /app/var/media /app/var/beat \
 && chown -R switchboard /app/var

USER switchboard
EXPOSE 8000
# Whose X-Forwarded-For/-Proto uvicorn believes: set FORWARDED_ALLOW_IPS to the TLS proxy's
# address when clients can reach this port directly (with *, they could claim any address and
# slip past the per-address sign-in and token throttles).
ENV FORWARDED_ALLOW_IPS="*"
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--workers", "2", "--proxy-headers", "--no-access-log"]
