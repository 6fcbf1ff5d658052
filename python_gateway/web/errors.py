"""Error pages of a web site, as middleware (the outermost of the site).

- The site's unauthenticated problem (no, expired or revoked session): the session cookie is cleared and the
  browser sent to the sign-in page (``?next=`` the page it asked for, on GET).
- A refused POST (a form) with any named problem of a 4xx status but the site's unauthenticated and forbidden ones
  (``validation`` above all, but also e.g. ``tag-blocked`` or ``invalid-transition``): the page the form is on (the
  GET handler of the same URL, or the one :func:`page_of` names) is shown again with the submitted values and the
  message, next to the field the problem's detail names (``{"field": name}``) or above the form (above the page
  when that form is no longer on it); the status is the problem's.
- Any other named problem from the database, an unknown page, a refused CSRF check: an error page with the problem
  type's title and its detail.
- Anything unexpected: logged, and a 500 page without details.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import quote

import psycopg
import psycopg_pool
from aiohttp import web

from ..gateway.problems import REGISTRY_KEY, Handler, Problem, ProblemType
from .csrf import CsrfRefused
from .sessions import clear_cookie, is_public
from .site import SITE_KEY, SiteConfig
from .templating import FORM_STATE, FormState, render

log = logging.getLogger("festpay.web")

_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])
T = TypeVar("T")

#: Fields never sent back into a form that is shown again.
SECRET_FIELDS = ("password", "new_password", "new_password_repeat", "csrf_token")

HTTP_TITLES = {
    400: "Bad request",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    500: "Internal error",
    503: "Not available",
}


def _problem_type(request: web.Request, slug: str) -> ProblemType:
    registry = request.config_dict[REGISTRY_KEY]
    return registry.by_slug.get(slug) or registry.by_slug["internal"]


def page_handler(request: web.Request) -> Handler | None:
    """The GET handler of the request's URL pattern (aiohttp keeps GET and POST of a path as separate resources)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    for candidate in request.app.router.resources():
        if candidate.canonical == resource.canonical:
            for route in candidate:
                if route.method == "GET":
                    return route.handler
    return None


def back_path(request: web.Request) -> str:
    """The page to go back to from an error: the page itself, or for a form posted to a sub-path its page."""
    if request.method == "GET" or page_handler(request) is not None:
        return request.path
    return request.path.rsplit("/", 1)[0] or "/"


def error_page(request: web.Request, status: int, title: str, detail: str | None,
               slug: str | None = None) -> web.Response:
    site = request.config_dict[SITE_KEY]
    return render(request, site.error_template, {"status": status, "title": title, "detail": detail, "slug": slug,
                                                 "back": back_path(request)}, status=status)


def to_login(request: web.Request) -> web.HTTPSeeOther:
    site = request.config_dict[SITE_KEY]
    target = site.path("/login")
    if request.method == "GET" and request.path != target:
        target += "?next=" + quote(request.path_qs, safe="/")
    redirect = web.HTTPSeeOther(target)
    clear_cookie(redirect, site)
    return redirect


def page_of(handler_of_page: Handler) -> Callable[[_H], _H]:
    """Declares the page a form handler's form is on (when the form posts to a sub-path of that page): a refused
    form is shown again on it."""
    def mark(handler: _H) -> _H:
        handler.__festpay_page__ = handler_of_page  # type: ignore[attr-defined]
        return handler
    return mark


async def _form_again(request: web.Request, problem: Problem, pt: ProblemType) -> web.StreamResponse | None:
    """The page of the refused form, shown again; None when there is no page to show it on."""
    get_handler = getattr(request.match_info.handler, "__festpay_page__", None) or page_handler(request)
    if get_handler is None:
        return None
    form = await request.post()
    field = problem.extensions.get("field") if isinstance(problem.extensions, dict) else None
    message = problem.detail or pt.title
    request[FORM_STATE] = FormState(
        form=form.get("form") if isinstance(form.get("form"), str) else None,
        errors={str(field) if field else "": message},
        values={k: v for k, v in form.items() if isinstance(v, str) and k not in SECRET_FIELDS},
        title=pt.title,
    )
    response = await get_handler(request)
    response.set_status(pt.status)
    return response


def refused_form(site: SiteConfig, pt: ProblemType) -> bool:
    """Whether a POST that met problem ``pt`` is answered with its form again (the rest get an error page): every
    4xx problem the viewer can do something about on the form; not a missing session, not a missing privilege."""
    return 400 <= pt.status < 500 and pt.slug not in (site.unauthenticated, site.forbidden)


async def problem_page(request: web.Request, problem: Problem) -> web.StreamResponse:
    site = request.config_dict[SITE_KEY]
    if problem.slug == site.unauthenticated:
        raise to_login(request)
    pt = _problem_type(request, problem.slug)
    if request.method == "POST" and refused_form(site, pt) and not is_public(request):
        try:
            again = await _form_again(request, problem, pt)
        except (Problem, psycopg.Error) as err:  # the page itself cannot be shown: say what the form met
            log.info("the page of a refused form failed too: %s", err)
            again = None
        if again is not None:
            return again
    return error_page(request, pt.status, pt.title, problem.detail, pt.slug)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    registry = request.config_dict[REGISTRY_KEY]
    site = request.config_dict[SITE_KEY]
    try:
        try:
            return await handler(request)
        except psycopg_pool.PoolTimeout:
            log.error("no database connection for %s %s within the pool timeout", request.method, request.path)
            raise Problem("not-ready", "The database is not reachable; try again in a moment.") from None
        except psycopg.Error as err:
            problem = registry.from_db_error(err)
            if problem is None:
                if isinstance(err, psycopg.OperationalError):
                    log.error("database error on %s %s (SQLSTATE %s): %s", request.method, request.path,
                              err.sqlstate, str(err).strip())
                    raise Problem("not-ready", "The database could not answer; try again.") from None
                log.exception("database error on %s %s (SQLSTATE %s)", request.method, request.path, err.sqlstate)
                raise Problem("internal") from None
            raise problem from None
    except Problem as problem:
        return await problem_page(request, problem)
    except CsrfRefused as refused:
        return error_page(request, 403, HTTP_TITLES[403], refused.why, "csrf")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404 and request.path == site.prefix:
            raise web.HTTPPermanentRedirect(site.path("/")) from None
        title = HTTP_TITLES.get(exc.status, exc.reason)
        detail = None if exc.status == 404 else exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" \
            else None
        response = error_page(request, exc.status, title, detail)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_page(request, 500, HTTP_TITLES[500], None, "internal")


async def attempt(request: web.Request, form: str, values: dict[str, str],
                  work: Callable[[], Awaitable[T]]) -> tuple[T | None, int]:
    """Runs ``work`` for a page that reads its own form (a GET filter form): a ``validation`` problem (from parsing
    or from the database) becomes the form's field message instead of an error page.

    Returns (the result, 200) or (None, the problem's status) with the form state set for the page.
    """
    try:
        return await work(), 200
    except psycopg.Error as err:
        problem = request.config_dict[REGISTRY_KEY].from_db_error(err)
        if problem is None or problem.slug != "validation":
            raise
    except Problem as err:
        if err.slug != "validation":
            raise
        problem = err
    pt = _problem_type(request, problem.slug)
    field = problem.extensions.get("field") if isinstance(problem.extensions, dict) else None
    request[FORM_STATE] = FormState(form=form, errors={str(field) if field else "": problem.detail or pt.title},
                                    values=values, title=pt.title)
    return None, pt.status
