"""Test settings: the base settings with fixed secrets and an eager task queue.

The database and Redis come from the environment as in production (`.ci/run` points them at
PostgreSQL and Redis); without `DATABASE_URL` the tests use SQLite.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "test-secret-key-not-for-production-use-0123456789")
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "kEL0sDxGSVDjRZ2zGhGYyOp-X9ncxX9BbSK7Sn5qV4M=")

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

# Tests that want the history import turn it on; the rest must not call a platform.
IMPORT_SESSION_HISTORY = False
# Tests process callbacks through the (eager) task queue only; a second thread would not see
# the test's transaction.
WEBHOOK_PROCESS_IN_WEB = False
# One task per callback, so a test's callbacks are processed one by one as it posts them; the
# drain (the production path with Redis) has tests of its own, and the end-to-end tests use it.
WEBHOOK_DRAIN = False
# Tests change accounts between callbacks; the cache has tests of its own that turn it on.
WEBHOOK_ACCOUNT_CACHE_SECONDS = 0.0
CHANNEL_CACHE_SECONDS = 0.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": ":memory:"}
# The test process serves no ASGI requests; the servers the end-to-end tests start use the pool.
DATABASES["default"].get("OPTIONS", {}).pop("pool", None)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LOGGING = {"version": 1, "disable_existing_loggers": False}
MEDIA_STORAGE_IS_S3 = False  # the files above are in memory, whatever .env says
# Downloads run at once: in eager mode a drain's media tasks run inside it, and would wait
# for it (tests/test_media.py tests the waiting with a busy signal of its own).
MEDIA_YIELD_MAX_SECONDS = 0.0
