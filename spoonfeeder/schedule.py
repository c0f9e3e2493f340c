"""The app's one scheduler: every periodic job of a process runs on it — the task lease
reaper, the sweep of idle UI sessions, the expiry of live previews — instead of a loop
of its own each. `AppContext` owns it; each job runs alone (no overlap, missed runs
coalesced), and a job that raises is logged by APScheduler and runs again next time."""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler


def make_scheduler() -> BackgroundScheduler:
    scheduler = BackgroundScheduler(
        daemon=True, job_defaults={"coalesce": True, "max_instances": 1}
    )
    scheduler.start()
    return scheduler
