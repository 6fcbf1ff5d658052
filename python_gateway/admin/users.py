"""Admin users and the audit log: ``/admin/users`` (create, change role, disable, set a password) and
``/admin/audit`` (who did what and when, with before and after; keyset pagination by id descending).

Both need the privilege users (checked by the api functions).
"""

from __future__ import annotations

from aiohttp import web

from .common import call, call_value, done_note, query, read_form, render, see_other, token

AUDIT_PAGE = 100


async def users_page(request: web.Request) -> web.Response:
    """GET /admin/users (the roles, with their privileges, are the choice list of the form)"""
    users = await call(request, "admin_users", token(request))
    roles = await call(request, "admin_roles", token(request))
    return render(request, "admin/users.html", {"users": users, "roles": roles, "note": done_note(request)})


async def user_save(request: web.Request) -> web.StreamResponse:
    """POST /admin/users (``user_id`` empty: a new user; ``username``, ``role``, ``disabled``, ``password`` empty:
    keep the password)"""
    form = await read_form(request)
    await call_value(request, "admin_user_save", token(request), form.whole("user_id"),
                     form.text("username", required=True), form.text("role", required=True), form.flag("disabled"),
                     form.secret("password") or None)
    raise see_other(request, "/users", done="saved")


async def audit_page(request: web.Request) -> web.Response:
    """GET /admin/audit[?before=id]"""
    before = query(request).whole("before")
    entries = await call(request, "admin_audit_log", token(request), before, AUDIT_PAGE)
    older = entries[-1]["id"] if len(entries) == AUDIT_PAGE else None
    return render(request, "admin/audit.html", {"entries": entries, "older": older, "paged": before is not None})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/users", users_page, name="users")
    app.router.add_post("/users", user_save)
    app.router.add_get("/audit", audit_page, name="audit")
