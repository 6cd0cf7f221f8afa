"""Render: one Jinja2 environment, user overrides first, strict and autoescaped.

The render context is documented in ``docs/templates.md``. Article text only ever
reaches templates as *data* (context values), so a headline such as ``{{ 7*7 }}``
is printed literally, never evaluated.

Per-subscriber fields are not known at render time: the context carries opaque
markers for them (``personal.*``), and ``digest.compose.message`` fills the finished,
inlined HTML and text once per recipient. Rendering therefore runs once per edition
and content variant, however many subscribers there are.
"""

from __future__ import annotations

import secrets
import sys
import traceback
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2

from digest.core.errors import TemplateError
from digest.core.text import one_line
from digest.edition.select import DigestView

PERSONAL_FIELDS = ("greeting", "name", "email", "unsubscribe_url", "preferences_url")


def builtin_templates_dir() -> Path:
    """The shipped templates: ``templates/`` in a checkout, ``digest/_templates`` in a wheel."""
    packaged = Path(__file__).resolve().parent.parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def make_environment(override_dir: str | Path | None = None) -> jinja2.Environment:
    """The one Jinja environment: the override directory is searched before the built-ins."""
    loaders: list[jinja2.BaseLoader] = []
    if override_dir:
        loaders.append(jinja2.FileSystemLoader(str(override_dir)))
    loaders.append(jinja2.FileSystemLoader(str(builtin_templates_dir())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html", "xml"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["longdate"] = lambda d: f"{d:%A}, {d.day} {d:%B %Y}"
    env.filters["wrap"] = _wrap
    return env


def _wrap(text: str, width: int = 72, indent: str = "") -> str:
    import textwrap

    return textwrap.fill(" ".join(str(text).split()), width=width, initial_indent=indent, subsequent_indent=indent)


@dataclass(frozen=True)
class Markers:
    """Opaque per-render placeholders for the personal fields.

    They carry a random nonce so that article text cannot contain one by chance or
    by design; they are plain ASCII letters and digits so that HTML escaping, CSS
    inlining and URL handling leave them untouched.
    """

    nonce: str

    @classmethod
    def new(cls) -> Markers:
        return cls(secrets.token_hex(8))

    def marker(self, name: str) -> str:
        return f"zq{self.nonce}{name.replace('_', '')}qz"

    def as_context(self) -> dict[str, str]:
        return {name: self.marker(name) for name in PERSONAL_FIELDS}


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    markers: Markers


def render_template(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    """Render template ``name``; any template problem becomes a TemplateError with file and line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(exc.filename or exc.name or name, exc.lineno, exc.message or str(exc)) from None
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(name, None, f"template not found: {exc.name}") from None
    except jinja2.UndefinedError as exc:
        where, line = _template_frame(name)
        raise TemplateError(where, line, str(exc)) from None


def _template_frame(default: str) -> tuple[str, int | None]:
    # Jinja rewrites tracebacks so that template frames carry the template's own
    # file name and line: the innermost such frame is where the error is.
    tb = sys.exc_info()[2]
    found: tuple[str, int | None] = (default, None)
    for frame, lineno in traceback.walk_tb(tb):
        fn = frame.f_code.co_filename
        if fn.endswith((".html", ".txt", ".xml")):
            found = (fn, lineno)
    return found


def render_subject(env: jinja2.Environment, source: str, context: dict[str, Any]) -> str:
    """Render the digest's subject template to one clean line."""
    try:
        raw = env.from_string(source).render(context)
    except jinja2.TemplateError as exc:
        raise TemplateError("subject", getattr(exc, "lineno", None), str(exc)) from None
    return one_line(raw)


def build_context(
    *,
    digest_name: str,
    digest_title: str,
    edition_date: date,
    slot: str,
    view: DigestView,
    base_url: str,
    postal_address: str,
    markers: Markers,
) -> dict[str, Any]:
    """The documented render context (see docs/templates.md)."""
    headlines = ([view.top_story.title] if view.top_story else []) + [
        s.title for sec in view.sections for s in sec.stories
    ]
    preheader = " · ".join(headlines[:3])
    return {
        "digest": {"name": digest_name, "title": digest_title},
        "edition": {
            "date": edition_date,
            "slot": slot,
            "archive_url": f"{base_url}/archive/{digest_name}/{slot}",
        },
        "top_story": view.top_story,
        "sections": view.sections,
        "story_count": view.story_count,
        "preheader": preheader,
        "base_url": base_url,
        "postal_address": postal_address,
        "personal": markers.as_context(),
    }


def render_variant(
    env: jinja2.Environment,
    template: str,
    subject_template: str,
    context: dict[str, Any],
    markers: Markers,
) -> Rendered:
    """Render subject, HTML and text of one content variant (``context`` from build_context)."""
    html = render_template(env, f"email/{template}.html", context)
    text = render_template(env, f"email/{template}.txt", context)
    subject = render_subject(env, subject_template, context)
    return Rendered(subject=subject, html=html, text=text, markers=markers)
