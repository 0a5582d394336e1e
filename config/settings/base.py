"""Settings for every environment, read from environment variables.

With no `DATABASE_URL` the project runs on SQLite under `var/`; with no `CELERY_BROKER_URL` it
uses kombu's filesystem transport under `var/`, so `make run` works on a bare machine. Production,
CI and the end-to-end tests set both to PostgreSQL and Redis. `.env.example` documents every
variable read here.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import BASE_DIR, env_bool, env_float, env_int, env_list, env_str

VAR_DIR = Path(env_str("SWITCHBOARD_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key() -> str:
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it (and FIELD_ENCRYPTION_KEYS) for production, "
            "or set DJANGO_DEBUG=1 for a local development run."
        )
    # Development only: a key made once per checkout, so logins survive restarts.
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()

# Fernet keys (comma-separated, newest first) that encrypt platform credentials at rest.
# Development derives one from SECRET_KEY; production must set its own (see .env.example).
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS and not DEBUG:
    raise ImproperlyConfigured(
        "FIELD_ENCRYPTION_KEYS is not set. Generate one with "
        '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`.'
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# Absolute base URL the platforms reach us at; used to build the callback URLs shown in admin
# and registered with the platform.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "csp",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "integrations",
    "inbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.PermissionsPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # request.htmx: whether htmx made the request, and its target (django-htmx).
    "django_htmx.middleware.HtmxMiddleware",
    # Headers, query strings and forms with text the database cannot store (NUL): a 4xx.
    "inbox.request_checks.RequestTextMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'switchboard.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the embedded default only; WAL and a busy timeout let the web server and the
    # worker write to it side by side.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif env_bool("DATABASE_POOL", True):
    # Under ASGI each request runs in its own context, so a persistent connection is never
    # reused: it leaks until PostgreSQL refuses new clients (`make bench` found this). A
    # process-wide psycopg pool hands connections back at the end of each request instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False  # the pool checks connections itself
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env_int("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env_int("DATABASE_POOL_MAX_SIZE", 8),
        "timeout": env_float("DATABASE_POOL_TIMEOUT", 10.0),
        "max_idle": 300,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "inbox:login"
LOGIN_REDIRECT_URL = "inbox:index"
LOGOUT_REDIRECT_URL = "inbox:login"

# AxesStandaloneBackend first: it refuses a locked-out sign-in before any password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# Sign-in throttling (django-axes, accounts/signin.py), on the inbox's sign-in page and admin's:
# after SIGNIN_FAILURE_LIMIT wrong passwords for one account, or from one address, signing in
# is paused for SIGNIN_COOLOFF_MINUTES (each further attempt restarts the wait); a successful
# sign-in clears its account's count. The address is the one the ASGI server reports (behind a
# proxy, run uvicorn with --proxy-headers and --forwarded-allow-ips set to the proxy).
AXES_FAILURE_LIMIT = env_int("SIGNIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("SIGNIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_HANDLER = "accounts.signin.SignInAttemptHandler"
AXES_LOCKOUT_CALLABLE = "accounts.signin.signin_locked_out"
AXES_CLIENT_IP_CALLABLE = "accounts.signin.client_address"
# Successful sign-ins are in the users' last_login already; axes keeps failures only.
AXES_DISABLE_ACCESS_LOG = True
# No "AXES: BEGIN" line at the start of every process and command.
AXES_VERBOSE = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]

# Stored files (uploads, media) go through Django's storage API: the filesystem under var/media
# by default, S3-compatible object storage (AWS S3, MinIO, ...) when S3_BUCKET is set. With S3
# every file is private and reached through links signed for MEDIA_SIGNED_URL_SECONDS.
MEDIA_URL = "media/"
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_SIGNED_URL_SECONDS = env_int("MEDIA_SIGNED_URL_SECONDS", 300)
_S3_ADDRESSING_STYLES = ("auto", "path", "virtual")


def s3_storage_options(
    bucket: str,
    *,
    endpoint_url: str = "",
    region: str = "us-east-1",
    access_key_id: str = "",
    secret_access_key: str = "",
    addressing_style: str = "",
    location: str = "",
    signed_url_seconds: int = 300,
) -> dict[str, object]:
    """Return the OPTIONS of django-storages' S3Storage for one bucket.

    Objects get no ACL (they stay private: links are signed, SigV4), a new file never replaces
    one of the same name, and a file read through the storage spills to a temporary file past
    2 MiB instead of sitting in memory whole. Without keys boto3 finds its own credentials
    (AWS_* variables, an instance or task role). tests/s3.py builds its storage from this too.
    """
    style = addressing_style or ("path" if endpoint_url else "auto")
    if style not in _S3_ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"S3_ADDRESSING_STYLE must be one of {', '.join(_S3_ADDRESSING_STYLES)}, not {style!r}."
        )
    if bool(access_key_id) != bool(secret_access_key):
        raise ImproperlyConfigured(
            "Set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither."
        )
    options: dict[str, object] = {
        "bucket_name": bucket,
        "region_name": region,
        "addressing_style": style,
        "default_acl": None,
        "file_overwrite": False,
        "querystring_auth": True,
        "querystring_expire": signed_url_seconds,
        "signature_version": "s3v4",
        # django-storages' default (0) keeps a whole object in memory while it is read.
        "max_memory_size": 2 * 1024 * 1024,
    }
    if endpoint_url:
        options["endpoint_url"] = endpoint_url
    if access_key_id:
        options["access_key"] = access_key_id
        options["secret_key"] = secret_access_key
    if location:
        options["location"] = location
    return options


def media_sources(endpoint_url: str, *, s3: bool, redirect: bool) -> list[str]:
    """Return the origins besides our own that pages load stored files from: the bucket's,
    when the media view sends browsers on to signed URLs there."""
    if not (s3 and redirect):
        return []
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}"]
    return ["https://*.amazonaws.com"]


MEDIA_STORAGE_IS_S3 = bool(env_str("S3_BUCKET"))
STORAGES: dict[str, dict[str, object]] = {
    "default": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_storage_options(
                env_str("S3_BUCKET"),
                endpoint_url=env_str("S3_ENDPOINT_URL"),
                region=env_str("S3_REGION", "us-east-1"),
                access_key_id=env_str("S3_ACCESS_KEY_ID"),
                secret_access_key=env_str("S3_SECRET_ACCESS_KEY"),
                addressing_style=env_str("S3_ADDRESSING_STYLE"),
                location=env_str("S3_LOCATION"),
                signed_url_seconds=MEDIA_SIGNED_URL_SECONDS,
            ),
        }
        if MEDIA_STORAGE_IS_S3
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

REDIS_URL = env_str("REDIS_URL")

# The cache holds short-lived counters shared by all web processes (the API's count of invalid
# tokens per address): Redis when configured, else each process's memory.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "switchboard",
        }
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Celery. Without a broker URL, kombu's filesystem transport under var/ needs no server and
# still works with real worker and beat processes. Every folder it writes is under var/: its
# exchange tables too (`control_folder`, which kombu otherwise makes in the working directory).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL or "filesystem://")
_celery_fs_dir = VAR_DIR / "celery-broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (_celery_fs_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_celery_fs_dir / "queue"),
        "data_folder_out": str(_celery_fs_dir / "queue"),
        "processed_folder": str(_celery_fs_dir / "processed"),
        "control_folder": str(_celery_fs_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        # Publishing fails at once when the broker is down instead of retrying inside the
        # request; the event row is already stored and the sweep enqueues it later. (Workers
        # reconnect on their own schedule: broker_connection_retry below.)
        "max_retries": 0,
        "socket_connect_timeout": env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0),
        "socket_timeout": 10,
        # No unacknowledged-message bookkeeping in Redis: what makes work durable is its row
        # (recovered by the sweeps and reapers in seconds), and with unacknowledged messages
        # held when Redis went away, kombu's attempt to hand them back crashed the worker
        # instead of reconnecting (the Redis-outage end-to-end test found it). A warm shutdown
        # still hands back what a worker took and had not started.
        "ack_emulation": False,
    }
CELERY_TASK_IGNORE_RESULT = True
# Two lanes, each served by its own worker (README "Deploying"), so a slow platform never holds
# up inbound callbacks and a burst of callbacks never holds up replies:
#   <default>            inbound callbacks (webhook drains) and housekeeping (sweeps, reapers):
#                        a prefork worker (CPU-bound work, one task per process)
#   <default>.platform   every call to a platform (sends, reconciliation, session actions,
#                        history import, template and channel sync): a thread-pool worker, so a
#                        hung call holds one thread, not the worker
# A separate default queue lets an end-to-end run share a Redis with a developer's `make run`.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
PLATFORM_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.platform"
PLATFORM_TASKS = (
    "inbox.tasks.message_deliver",
    "inbox.tasks.messages_drain",
    "inbox.tasks.message_reconcile",
    "inbox.tasks.session_action_perform",
    "inbox.tasks.session_history_import",
    "integrations.tasks.templates_sync_all",
    "integrations.tasks.templates_sync_account",
    "integrations.tasks.channels_sync_all",
    "integrations.tasks.account_poll",
    "inbox.tasks.account_receipts_fetch",
    # Beat's dispatchers of polls and receipts looks: never queued behind the inbound lane's
    # drains (a poll that waits for a drain is a customer message that waits for a poll).
    "integrations.tasks.accounts_poll_due",
    "inbox.tasks.receipts_fetch_due",
)
# <default>.media: fetching inbound media files from the platforms (a thread-pool worker).
MEDIA_QUEUE = f"{CELERY_TASK_DEFAULT_QUEUE}.media"
MEDIA_TASKS = ("inbox.tasks.media_fetch", "inbox.tasks.media_fetches_start")
CELERY_TASK_ROUTES = {
    **{name: {"queue": PLATFORM_QUEUE} for name in PLATFORM_TASKS},
    **{name: {"queue": MEDIA_QUEUE} for name in MEDIA_TASKS},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Platform calls are acknowledged when they start: what makes them durable is their row (a
# queued or claimed message or action, recovered by the reapers), not the broker; and a late
# acknowledgement from a pool thread racing a lost broker connection left the thread-pool
# worker stuck after Redis came back (the Redis-outage end-to-end test found it).
CELERY_TASK_ANNOTATIONS = {name: {"acks_late": False} for name in PLATFORM_TASKS}
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 4)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2.0)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery's Django fixup closes the database (with a pool: the whole pool) around every task
# unless told to reuse it; config/celery.py hands each task's connection back to the pool.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Platforms that do not call us (`Provider.ingest == "poll"`) are asked this often; one poll
# fetches up to POLL_MAX_PAGES pages while the platform says more is waiting.
POLL_INTERVAL_SECONDS = env_float("POLL_INTERVAL_SECONDS", 5.0)
POLL_MAX_PAGES = env_int("POLL_MAX_PAGES", 20)
# MessageWhiz polling (spec §4.3). Customers are read down to the newest activity seen less
# this overlap, so a message the platform lists late is still found (a longer overlap costs
# more customer pages per cycle while customers are busy, none when they are quiet).
MW_POLL_OVERLAP_SECONDS = env_float("MW_POLL_OVERLAP_SECONDS", 15.0)
# Customers whose histories one stored page holds (more wait in the cursor for the next page).
# Small pages: the first is applied while the next customers are read, and it holds those who
# waited longest (the bench's poll lag: a page of 100 took a second to apply).
MW_POLL_CUSTOMERS_PER_PAGE = env_int("MW_POLL_CUSTOMERS_PER_PAGE", 25)
# History calls at once per account (§4.3: about 4).
MW_HISTORY_CONCURRENCY = env_int("MW_HISTORY_CONCURRENCY", 4)
# How far back a new account's first poll reads (§4.3 initial sync: a week).
MW_BACKFILL_HOURS = env_float("MW_BACKFILL_HOURS", 7 * 24.0)
# Platforms that push no receipts (Capability.RECEIPTS_FETCH): sends on their way are looked
# up this often (seconds after the send, then after each look that found no final status),
# until final or older than RECEIPTS_FETCH_MAX_AGE_HOURS (delivered ones: a day, for READ).
RECEIPTS_FETCH_BACKOFF_SECONDS = tuple(
    float(s)
    for s in env_str("RECEIPTS_FETCH_BACKOFF_SECONDS", "2,4,8,15,30,60,300,900,3600").split(",")
)
RECEIPTS_FETCH_MAX_AGE_HOURS = env_float("RECEIPTS_FETCH_MAX_AGE_HOURS", 72.0)
RECEIPTS_FETCH_BATCH = env_int("RECEIPTS_FETCH_BATCH", 500)
CELERY_BEAT_SCHEDULE = {
    "webhook-events-sweep": {
        "task": "integrations.tasks.webhook_events_sweep",
        "schedule": env_float("WEBHOOK_SWEEP_INTERVAL_SECONDS", 3.0),
    },
    "messages-reap": {
        "task": "inbox.tasks.messages_reap",
        "schedule": env_float("SEND_REAP_INTERVAL_SECONDS", 3.0),
    },
    "session-actions-reap": {
        "task": "inbox.tasks.session_actions_reap",
        "schedule": env_float("SEND_REAP_INTERVAL_SECONDS", 3.0),
    },
    "templates-sync": {
        "task": "integrations.tasks.templates_sync_all",
        "schedule": float(env_int("TEMPLATE_SYNC_INTERVAL_SECONDS", 15 * 60)),
    },
    "channels-sync": {
        "task": "integrations.tasks.channels_sync_all",
        "schedule": float(env_int("CHANNEL_SYNC_INTERVAL_SECONDS", 60 * 60)),
    },
    "accounts-poll": {
        "task": "integrations.tasks.accounts_poll_due",
        "schedule": POLL_INTERVAL_SECONDS,
    },
    "receipts-fetch": {
        "task": "inbox.tasks.receipts_fetch_due",
        "schedule": POLL_INTERVAL_SECONDS,
    },
}

# Media files (issue 15). Every inbound file is fetched from the platform into our storage by
# a task on its own lane (MEDIA_QUEUE: a slow download never holds up a callback or a reply).
MEDIA_MAX_BYTES = env_int("MEDIA_MAX_BYTES", 32 * 1024 * 1024)
# A download may wait this long for its next bytes (files are larger and slower than API calls).
MEDIA_READ_TIMEOUT_SECONDS = env_float("MEDIA_READ_TIMEOUT_SECONDS", 30.0)
# Tries of a fetch that failed in a way that may pass (a 5xx, a timeout, a wrong checksum),
# the first wait between them (doubling each time), and how long a claimed fetch may run
# before the sweep takes it for lost (a killed worker).
MEDIA_FETCH_ATTEMPTS = env_int("MEDIA_FETCH_ATTEMPTS", 6)
MEDIA_FETCH_BACKOFF_SECONDS = env_float("MEDIA_FETCH_BACKOFF_SECONDS", 10.0)
MEDIA_FETCH_BACKOFF_MAX_SECONDS = env_float("MEDIA_FETCH_BACKOFF_MAX_SECONDS", 600.0)
MEDIA_FETCH_LEASE_SECONDS = env_int("MEDIA_FETCH_LEASE_SECONDS", 300)
MEDIA_SWEEP_INTERVAL_SECONDS = env_float("MEDIA_SWEEP_INTERVAL_SECONDS", 15.0)
MEDIA_THUMBNAIL_EDGE = env_int("MEDIA_THUMBNAIL_EDGE", 480)
# While drains apply callbacks, a download waits (text first), but never once its file is
# this many seconds old (0: never waits).
MEDIA_YIELD_MAX_SECONDS = env_float("MEDIA_YIELD_MAX_SECONDS", 30.0)
# With object storage, a browser allowed to see a file is sent on to a signed URL of the bucket
# (the app streams nothing); off, the app streams it, for a bucket browsers cannot reach (the
# compose file's MinIO answers only inside its network).
MEDIA_SERVE_REDIRECT = env_bool("MEDIA_SERVE_REDIRECT", True)
# How long a link that lets a platform fetch one of our uploads (no sign-in) stays valid.
MEDIA_PLATFORM_LINK_SECONDS = env_int("MEDIA_PLATFORM_LINK_SECONDS", 24 * 3600)
# How often retention runs (it deletes files older than their channel keeps them).
MEDIA_RETENTION_INTERVAL_SECONDS = env_float("MEDIA_RETENTION_INTERVAL_SECONDS", 3600.0)
CELERY_BEAT_SCHEDULE["media-sweep"] = {
    "task": "inbox.tasks.media_sweep",
    "schedule": MEDIA_SWEEP_INTERVAL_SECONDS,
}
CELERY_BEAT_SCHEDULE["media-retention"] = {
    "task": "inbox.tasks.media_retention_apply",
    "schedule": MEDIA_RETENTION_INTERVAL_SECONDS,
}

# Webhooks.
# `make bench` mounts its baseline endpoints under /_bench/ (bench/views.py); nothing else does.
BENCH_ENDPOINTS = env_bool("BENCH_ENDPOINTS", False)

# What applies a stored callback to the inbox (`integrations.applier`): integrations never
# import the inbox, they call this class.
INBOUND_CALLBACK_APPLIER = "inbox.services.callbacks.InboxApplier"
WEBHOOK_MAX_BODY_BYTES = env_int("WEBHOOK_MAX_BODY_BYTES", 1024 * 1024)
# Deeper nesting is refused with 400 (the documented callbacks nest 5 levels).
WEBHOOK_MAX_JSON_DEPTH = env_int("WEBHOOK_MAX_JSON_DEPTH", 64)
# After a verify token is regenerated, the old one is still accepted this long.
WEBHOOK_TOKEN_GRACE_HOURS = env_float("WEBHOOK_TOKEN_GRACE_HOURS", 24.0)
# Seconds a web process keeps an account found by its callback URL (0: read it every time).
WEBHOOK_ACCOUNT_CACHE_SECONDS = env_float("WEBHOOK_ACCOUNT_CACHE_SECONDS", 5.0)
# A pending event whose task has not run this long is enqueued again by the sweep (its task
# was lost, e.g. with a broker restart). Events the broker refused are enqueued at once.
WEBHOOK_REENQUEUE_AFTER_SECONDS = env_int("WEBHOOK_REENQUEUE_AFTER_SECONDS", 900)
# A callback that overtook what it refers to (an event before its session) is retried after
# this long, up to WEBHOOK_MAX_ATTEMPTS times in all.
WEBHOOK_DEFER_SECONDS = env_int("WEBHOOK_DEFER_SECONDS", 30)
# A fallback that keeps the inbox live when the worker is down or far behind: the web process
# processes a callback itself if no worker has this long after it arrived; it keeps at most
# WEBHOOK_INLINE_BACKLOG such callbacks waiting per process.
WEBHOOK_PROCESS_IN_WEB = env_bool("WEBHOOK_PROCESS_IN_WEB", True)
WEBHOOK_INLINE_DELAY_SECONDS = env_float("WEBHOOK_INLINE_DELAY_SECONDS", 1.0)
WEBHOOK_INLINE_BACKLOG = env_int("WEBHOOK_INLINE_BACKLOG", 50)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 10)
# With Redis, the webhook enqueues one drain task per burst instead of one task per callback
# (a Redis SET NX instead of a broker message); each drain claims WEBHOOK_DRAIN_BATCH fresh
# events at a time and hands over to a new task after WEBHOOK_DRAIN_BUDGET_SECONDS.
WEBHOOK_DRAIN = env_bool("WEBHOOK_DRAIN", True)
WEBHOOK_DRAIN_BATCH = env_int("WEBHOOK_DRAIN_BATCH", 50)
WEBHOOK_DRAIN_BUDGET_SECONDS = env_float("WEBHOOK_DRAIN_BUDGET_SECONDS", 10.0)
WEBHOOK_DRAIN_KICK_TTL_SECONDS = env_float("WEBHOOK_DRAIN_KICK_TTL_SECONDS", 10.0)
# Fresh callbacks unclaimed this long lost their drain (or wait behind a backlog): the sweep
# enqueues one more drain.
WEBHOOK_DRAIN_LOST_SECONDS = env_float("WEBHOOK_DRAIN_LOST_SECONDS", 15.0)
# Seconds a process keeps a channel found by its platform id (0: read it every time).
CHANNEL_CACHE_SECONDS = env_float("CHANNEL_CACHE_SECONDS", 5.0)
# Claims are leases: a worker renews the claims it holds (callbacks, sends, session actions)
# every CLAIM_RENEW_SECONDS while it works on them (integrations/leases.py), so a claim not
# renewed for CLAIM_LEASE_SECONDS belongs to a worker that died, and the sweeps and reapers
# (every few seconds) recover it. The lease must outlast a few missed renewals.
CLAIM_RENEW_SECONDS = env_float("CLAIM_RENEW_SECONDS", 2.0)
CLAIM_LEASE_SECONDS = env_float("CLAIM_LEASE_SECONDS", 8.0)
# A claimed event whose lease ran out (its worker died) is reclaimed after this long.
WEBHOOK_STALE_CLAIM_SECONDS = env_float("WEBHOOK_STALE_CLAIM_SECONDS", CLAIM_LEASE_SECONDS)

# Sending. (How long after a customer's last message free-form messages may go out is the
# platform's rule, per medium: each provider's `messaging_windows`, WhatsApp 24 h.)
# Per-channel send rate, shared by all workers through Redis when REDIS_URL is set (0: no limit).
SEND_RATE_LIMIT_PER_SECOND = env_int("SEND_RATE_LIMIT_PER_SECOND", 80)
# A channel's replies go out in batches (`deliver.messages_drain`): at most this many claimed
# at once, their platform calls side by side on SEND_CALL_THREADS threads per worker process;
# answers from a call that waited on its platform longer than SEND_COLLECT_SECONDS are recorded
# as they come, and another drain carries on with the channel meanwhile.
SEND_DRAIN_BATCH = env_int("SEND_DRAIN_BATCH", 50)
SEND_DRAIN_BUDGET_SECONDS = env_float("SEND_DRAIN_BUDGET_SECONDS", 10.0)
SEND_DRAIN_KICK_TTL_SECONDS = env_float("SEND_DRAIN_KICK_TTL_SECONDS", 10.0)
SEND_CALL_THREADS = env_int("SEND_CALL_THREADS", 16)
SEND_COLLECT_SECONDS = env_float("SEND_COLLECT_SECONDS", 0.5)
# How often a send is attempted before the message is marked failed, and the first backoff.
SEND_MAX_ATTEMPTS = env_int("SEND_MAX_ATTEMPTS", 6)
SEND_BACKOFF_BASE_SECONDS = env_float("SEND_BACKOFF_BASE_SECONDS", 2.0)
SEND_BACKOFF_MAX_SECONDS = env_float("SEND_BACKOFF_MAX_SECONDS", 300.0)
# Seconds to connect to a platform and to wait for its answer.
PLATFORM_CONNECT_TIMEOUT = env_float("PLATFORM_CONNECT_TIMEOUT", 5.0)
PLATFORM_READ_TIMEOUT = env_float("PLATFORM_READ_TIMEOUT", 30.0)
# A send whose lease ran out this long ago with no outcome is treated as cut short (worker killed).
SEND_STALE_SECONDS = env_float("SEND_STALE_SECONDS", CLAIM_LEASE_SECONDS)
# A queued message (or session action) due this long ago that no worker has claimed lost its
# task (a killed worker's prefetched tasks, a broker restart): the reaper enqueues it again.
# A second task for the same row is harmless: it finds nothing to claim.
SEND_REQUEUE_AFTER_SECONDS = env_float("SEND_REQUEUE_AFTER_SECONDS", 10.0)
# ...unless the platform lane has a backlog: then its task is taken for lost only after this long.
SEND_REQUEUE_BEHIND_BACKLOG_SECONDS = env_float("SEND_REQUEUE_BEHIND_BACKLOG_SECONDS", 120.0)
# When the platform did not answer a send, wait this long before asking its session history
# (and between two such checks).
SEND_RECONCILE_AFTER_SECONDS = env_int("SEND_RECONCILE_AFTER_SECONDS", 20)
# A send the platform may have accepted is settled only by evidence (a receipt, its history),
# sought this long from the first attempt; without any it becomes `unconfirmed` for the agent.
SEND_CONFIRM_WINDOW_SECONDS = env_int("SEND_CONFIRM_WINDOW_SECONDS", 600)
# A reply waits while an earlier one in its conversation is unsettled, at most this long after
# it was written, looking again every SEND_ORDER_RECHECK_SECONDS.
SEND_ORDER_WAIT_SECONDS = env_int("SEND_ORDER_WAIT_SECONDS", 60)
SEND_ORDER_RECHECK_SECONDS = env_float("SEND_ORDER_RECHECK_SECONDS", 2.0)
# Import the earlier messages of a session the first time we see it.
IMPORT_SESSION_HISTORY = env_bool("IMPORT_SESSION_HISTORY", True)
# A new platform session keeps the assignee, team and labels of the customer's previous session
# on that channel when that one ended less than this many hours earlier (0: never).
SESSION_CARRY_OVER_HOURS = env_float("SESSION_CARRY_OVER_HOURS", 24.0)
TEMPLATE_SYNC_INTERVAL_SECONDS = env_int("TEMPLATE_SYNC_INTERVAL_SECONDS", 15 * 60)
CHANNEL_SYNC_INTERVAL_SECONDS = env_int("CHANNEL_SYNC_INTERVAL_SECONDS", 60 * 60)

REST_FRAMEWORK = {
    # Token first: an integrator without credentials gets 401 with `WWW-Authenticate: Token`.
    # Tokens are hashed (accounts.models.ApiToken); unknown keys are throttled per address.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The client address is the one the ASGI server reports; a client's own X-Forwarded-For
    # is never trusted (uvicorn --proxy-headers resolves a trusted proxy's).
    "NUM_PROXIES": 0,
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON, refused with a 400 where it holds what the database cannot store (NUL, ...).
    "DEFAULT_PARSER_CLASSES": ["inbox.api.parsers.CheckedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    # drf-spectacular's, with the error answers every operation can give (inbox/api/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "inbox.api.openapi.ApiAutoSchema",
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Switchboard API",
    "VERSION": "1.0.0",
    "DESCRIPTION": (
        "The integrator API of Switchboard: read sessions and messages, send messages "
        "(idempotent with an `Idempotency-Key` header), assign, route, resolve and close "
        "sessions. Authenticate with `Authorization: Token <key>`. Errors are JSON: "
        '`{"error": <code>, "detail": <text>}`.'
    ),
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["inbox.api.schema.api_endpoints_only"],
    "ENUM_NAME_OVERRIDES": {
        "SessionStatusEnum": "inbox.models.Session.Status",
        "MessageStatusEnum": "inbox.models.Message.Status",
        "MessageTypeEnum": "inbox.api.schema.message_type_choices",
        "SessionActionStateEnum": "inbox.models.SessionAction.State",
        "SendableTypeEnum": "inbox.api.schema.SENDABLE_TYPE_CHOICES",
        "ButtonTypeEnum": "inbox.api.schema.BUTTON_TYPE_CHOICES",
    },
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# API keys sent with too many unknown keys from one address get 429 (accounts/authentication.py).
API_TOKEN_FAILURE_RATE = env_str("API_TOKEN_FAILURE_RATE", "20/min")

# HTTPS. A deployment (DJANGO_DEBUG=0) is served over HTTPS behind a proxy: plain HTTP is
# redirected, browsers are told to use HTTPS only (HSTS), cookies are sent over HTTPS only.
# `make run`, the end-to-end tests and the benchmark serve plain HTTP on loopback
# (DJANGO_HTTPS=0). The proxy must set X-Forwarded-Proto (and overwrite a client's).
HTTPS = env_bool("DJANGO_HTTPS", not DEBUG)
SECURE_SSL_REDIRECT = HTTPS
# Health checks come from inside the container network, over HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_REFERRER_POLICY = "same-origin"

# Content-Security-Policy on every page (django-csp): scripts and styles from our own static
# files only, no inline script or style. Customer media (images, audio, video) is ours, served
# by the media view: from our own origin, or from the bucket it sends a browser on to. Pages
# that need more say so next to their view.
_MEDIA_SOURCES = media_sources(
    env_str("S3_ENDPOINT_URL"), s3=MEDIA_STORAGE_IS_S3, redirect=MEDIA_SERVE_REDIRECT
)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:", *_MEDIA_SOURCES],
        "media-src": [SELF, "blob:", *_MEDIA_SOURCES],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Browser features the pages never use, off for them and anything they embed.
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "ambient-light-sensor",
        "autoplay",
        "bluetooth",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "hid",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
