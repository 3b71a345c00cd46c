"""``/runbooks`` and ``/runbooks/{rule}``: the default rules' runbook pages (alerts.runbooks).

Vietnamese first, ``?lang=en`` for English. Open without a token, as the page a link in a
Telegram message or an e-mail opens on an on-call phone: runbooks are general instructions
and hold nothing the service collected.
"""

from __future__ import annotations

from aiohttp import web

from alerts.runbooks import find_runbook, runbooks
from web.i18n import LANGS, Translator
from web.keys import CONTEXT, WALL


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang", "vi")
    if lang not in LANGS:
        raise web.HTTPBadRequest(text=f"invalid lang: use one of {', '.join(LANGS)}")
    return lang


def _render(request: web.Request, lang: str, status: int = 200, **values: object
            ) -> web.Response:
    config = request.app[CONTEXT].config()
    html = request.app[WALL].templates.get_template("runbook.html").render(
        t=Translator(lang, config.province.timezone), lang=lang,
        title=config.service.title_in(lang), **{"text": None, "missing": None, **values})
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


async def index(request: web.Request) -> web.Response:
    lang = _lang(request)
    return _render(request, lang, entries=sorted(runbooks().items()))


async def page(request: web.Request) -> web.Response:
    lang = _lang(request)
    rule = request.match_info["rule"]
    found = find_runbook(rule)
    if found is None:
        return _render(request, lang, 404, missing=rule[:200],
                       entries=sorted(runbooks().items()))
    name, runbook = found
    return _render(request, lang, name=name, text=runbook.text(lang))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/runbooks", index)
    app.router.add_get("/runbooks/{rule}", page)
