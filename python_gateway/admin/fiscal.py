"""Fiscal ``/admin/fiscal``: the TSE (serial, counters, signing lag, outages), open tills and closings
(``api.admin_fiscal``); closing a till (Kassenabschluss, ``api.admin_close_cashpoint``, privilege finance); the
DSFinV-K export as a background job with progress, then a download.

The export job runs :func:`python_gateway.dsfinvk.export` in a worker thread on a connection of its own, logged in
as festpay_web, with the session token of the admin who started it (its ``api.admin_dsfinvk_*`` functions check
the privilege finance).  A job is visible to the admin who started it only, and kept for :data:`JOB_TTL_S`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from aiohttp import web

from ..gateway.problems import Problem
from ..migrate import libpq_url
from ..web.errors import page_of
from ..web.site import Viewer
from ..web.templating import formatter
from .common import call_value, done_note, field_error, read_form, render, see_other, token, viewer

log = logging.getLogger("festpay.web")

JOB_TTL_S = 3600.0
PROGRESS_EVERY = 5000
MAX_JOBS = 20


@dataclass
class ExportJob:
    id: str
    user_id: int
    event_id: int
    first: date | None
    last: date | None
    folder: Path
    started: float = field(default_factory=time.time)
    progress: list[str] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    file: Path | None = None
    summary: str | None = None

    @property
    def filename(self) -> str:
        span = "-".join(d.isoformat() for d in (self.first, self.last) if d) or "all"
        return f"dsfinvk-event{self.event_id}-{span}.zip"


class ExportJobs:
    """The running and finished export jobs of this process (in memory; a restart forgets them)."""

    def __init__(self, database_url: str):
        self.database_url = database_url
        self.jobs: dict[str, ExportJob] = {}
        self._lock = threading.Lock()

    def start(self, who: Viewer, first: date | None, last: date | None) -> ExportJob:
        self.expire()
        if who.event_id is None:
            raise field_error("", "There is no event to export yet.")
        if len(self.jobs) >= MAX_JOBS:
            raise field_error("", "Too many exports at once; try again in a while.")
        job = ExportJob(secrets.token_urlsafe(16), who.user_id, who.event_id, first, last,
                        Path(tempfile.mkdtemp(prefix="festpay-dsfinvk-")))
        self.jobs[job.id] = job
        thread = threading.Thread(target=self._run, args=(job, who.token), name=f"dsfinvk-{job.id[:6]}",
                                  daemon=True)
        thread.start()
        return job

    def _run(self, job: ExportJob, session_token: str) -> None:
        from .. import dsfinvk

        def progress(line: str) -> None:
            with self._lock:
                job.progress.append(line)

        out = job.folder / job.filename
        try:
            with psycopg.connect(libpq_url(self.database_url), autocommit=True,
                                 application_name="festpay-web-export") as conn:
                result = dsfinvk.export(conn, job.event_id, out, job.first, job.last, progress=progress,
                                        every=PROGRESS_EVERY, token=session_token)
            job.summary = (f"{result.closings} closings, {result.receipts} receipts, {result.lines} lines")
            job.file = out
        except psycopg.Error as err:
            job.error = (err.diag.message_primary or str(err)).strip()
            log.info("DSFinV-K export %s refused: %s", job.id, job.error)
        except Exception as err:  # an export bug must not take the site down: the job says it failed
            log.exception("DSFinV-K export %s failed", job.id)
            job.error = f"the export failed ({type(err).__name__})"
        finally:
            job.done = True

    def get(self, job_id: str, who: Viewer) -> ExportJob:
        job = self.jobs.get(job_id)
        if job is None or job.user_id != who.user_id:
            raise web.HTTPNotFound()
        return job

    def expire(self) -> None:
        now = time.time()
        for job in list(self.jobs.values()):
            if job.done and now - job.started > JOB_TTL_S:
                self.jobs.pop(job.id, None)
                shutil.rmtree(job.folder, ignore_errors=True)

    def close(self) -> None:
        for job in self.jobs.values():
            shutil.rmtree(job.folder, ignore_errors=True)
        self.jobs.clear()


JOBS_KEY = web.AppKey("dsfinvk_jobs", ExportJobs)


def _date(form_value: str | None, name: str) -> date | None:
    if not form_value:
        return None
    try:
        return date.fromisoformat(form_value)
    except ValueError:
        raise field_error(name, "Please enter a date like 2025-07-01.") from None


# ----------------------------------------------------------------------------- pages


async def fiscal_page(request: web.Request) -> web.Response:
    """GET /admin/fiscal"""
    fiscal = await call_value(request, "admin_fiscal", token(request))
    return render(request, "admin/fiscal.html", {"fiscal": fiscal or {}, "note": done_note(request)})


@page_of(fiscal_page)
async def close_till(request: web.Request) -> web.StreamResponse:
    """POST /admin/fiscal/close (``assignment_id``; empty: the backend's own till; ``confirm=yes``): without the
    confirmation a page that asks for it (no JavaScript needed); with it the till's Kassenabschluss."""
    form = await read_form(request)
    assignment_id = form.whole("assignment_id")
    form_name = f"close-{assignment_id if assignment_id is not None else 'backend'}"
    if form.text("confirm") != "yes":
        if not viewer(request).may("finance"):  # refused before asking; the api function checks it again
            raise Problem("admin-forbidden", "closing a till needs the privilege finance")
        fiscal = await call_value(request, "admin_fiscal", token(request)) or {}
        till = next((t for t in fiscal.get("open_cashpoints") or [] if t.get("assignment_id") == assignment_id),
                    None)
        fmt = formatter(request)
        name = "the backend's own till" if assignment_id is None else f"till {assignment_id}"
        facts = []
        if till is not None:
            name = f"till {till.get('client_id')}"
            facts = [("Till (client id)", str(till.get("client_id") or "")),
                     ("Device", till.get("device") or ("backend" if assignment_id is None else "")),
                     ("Position", till.get("position") or ""),
                     ("Open receipts", fmt.number(till.get("transactions") or 0))]
        return render(request, "admin/confirm.html", {
            "title": "Close a till (Kassenabschluss)",
            "question": f"Close {name} now?",
            "consequence": "Its open receipts get a cashpoint closing (Z number) for the DSFinV-K export. A closing "
                           "cannot be undone; the till goes on selling into its next closing.",
            "facts": facts, "action": request.path,
            "fields": {"form": form_name, "assignment_id": assignment_id},
            "confirm_label": "Yes, close the till", "danger": False, "cancel": "/fiscal",
        })
    await call_value(request, "admin_close_cashpoint", token(request), assignment_id)
    raise see_other(request, "/fiscal", done="closed")


@page_of(fiscal_page)
async def start_export(request: web.Request) -> web.StreamResponse:
    """POST /admin/fiscal/export (``from``, ``to``: dates of the closings, optional): 303 to the job's page.  A date
    that is no date, or an end before the start, is refused next to its field."""
    form = await read_form(request)
    first, last = _date(form.text("from"), "from"), _date(form.text("to"), "to")
    if first is not None and last is not None and last < first:
        raise field_error("to", "The last day must not be before the first day.")
    if not viewer(request).may("finance"):  # refused early; the job's api calls check the privilege again
        raise Problem("admin-forbidden", "the DSFinV-K export needs the privilege finance")
    job = request.app[JOBS_KEY].start(viewer(request), first, last)
    raise see_other(request, f"/fiscal/export/{job.id}")


async def export_page(request: web.Request) -> web.Response:
    """GET /admin/fiscal/export/{job}: progress (the page reloads itself while the job runs), then the download."""
    job = request.app[JOBS_KEY].get(request.match_info["job"], viewer(request))
    return render(request, "admin/fiscal_export.html", {"job": job, "progress": list(job.progress[-20:])})


async def export_download(request: web.Request) -> web.StreamResponse:
    """GET /admin/fiscal/export/{job}/download: the zip."""
    job = request.app[JOBS_KEY].get(request.match_info["job"], viewer(request))
    if job.file is None or not job.file.exists():
        raise web.HTTPNotFound()
    return web.FileResponse(job.file, headers={
        "Content-Type": "application/zip",
        "Content-Disposition": f'attachment; filename="{job.filename}"',
    })


def install(app: web.Application, database_url: str) -> None:
    app[JOBS_KEY] = ExportJobs(database_url)

    async def cleanup(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, app[JOBS_KEY].close)

    app.on_cleanup.append(cleanup)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/fiscal", fiscal_page, name="fiscal")
    app.router.add_post("/fiscal/close", close_till)
    app.router.add_post("/fiscal/export", start_export)
    app.router.add_get("/fiscal/export/{job}", export_page, name="fiscal-export")
    app.router.add_get("/fiscal/export/{job}/download", export_download, name="fiscal-export-download")
