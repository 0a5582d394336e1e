"""Without Redis (`make run`'s embedded mode) the filesystem broker writes only under var/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISH = (
    "import django; django.setup(); from config.celery import app; "
    "app.send_task('integrations.tasks.webhook_events_sweep')"
)


def test_the_embedded_broker_keeps_its_queues_and_exchange_tables_under_var(tmp_path):
    work, var = tmp_path / "work", tmp_path / "var"
    work.mkdir()
    unset = ("DJANGO_", "REDIS_URL", "CELERY_", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(unset)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        DJANGO_DEBUG="1",
        SWITCHBOARD_VAR_DIR=str(var),
        PYTHONPATH=str(ROOT),
    )

    result = subprocess.run(  # noqa: S603 - our own command
        [sys.executable, "-c", PUBLISH],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert list(work.iterdir()) == [], "the broker wrote into the working directory"
    assert (var / "celery-broker" / "control" / "celery.exchange").is_file()
    assert len(list((var / "celery-broker" / "queue").iterdir())) == 1
