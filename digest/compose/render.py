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

import functools
import gettext
import secrets
import sys
import traceback
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from babel.dates import get_day_names
from babel.numbers import format_decimal

from digest.compose.i18n import babel_locale, catalog_dirs, catalog_path, long_date, text_direction, translations
from digest.core.errors import TemplateError
from digest.core.text import one_line, split_first_sentence
from digest.edition.select import DigestView, Story

PERSONAL_FIELDS = ("greeting", "name", "email", "unsubscribe_url", "preferences_url")

# Image slots of the built-in 600 px layout: the hero spans the 536 px column (600
# minus 2 x 32 padding); a side image sits beside a story's text.
HERO_WIDTH = 536
SIDE_WIDTH = 120
# Narrower (or flatter) than this, an image is an avatar, icon, signature or rule:
# not worth a place in the email.
MIN_IMAGE_WIDTH = 100
MIN_IMAGE_HEIGHT = 50
# Headlines listed in "In today's edition", shown from OVERVIEW_MIN stories on (a
# shorter edition is its own overview).
OVERVIEW_COUNT = 5
OVERVIEW_MIN = 4
# A summary's first sentence longer than this is a paragraph, not a lead-in: such a
# story opens without one (a bold block of 300 characters reads as shouting).
AUTO_LEAD_MAX_CHARS = 200


def builtin_templates_dir() -> Path:
    """The shipped templates: ``templates/`` in a checkout, ``digest/_templates`` in a wheel."""
    packaged = Path(__file__).resolve().parent.parent / "_templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def make_environment(override_dir: str | Path | None = None, locale: str = "en") -> jinja2.Environment:
    """The one Jinja environment: the override directory is searched before the built-ins.

    ``locale`` (a BCP 47 tag) is the language of the templates' own strings (gettext,
    ``jinja2.ext.i18n``), dates and numbers; :func:`for_locale` gives the environment
    of another language, made once and kept.
    """
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
        extensions=["jinja2.ext.i18n"],
    )
    # Whitespace inside {% trans %} collapses: the catalogs hold one-line messages.
    env.policies["ext.i18n.trimmed"] = True
    dirs = catalog_dirs(builtin_templates_dir(), override_dir)
    trans = translations(dirs, locale)
    env.install_gettext_translations(trans, newstyle=True)  # type: ignore[attr-defined]
    loc = babel_locale(locale)
    env.filters["longdate"] = lambda d: long_date(d, locale)
    env.filters["number"] = lambda n: format_decimal(n, locale=loc)
    env.filters["dayname"] = lambda i: get_day_names("wide", locale=loc)[int(i)]
    # An address or a name inside a sentence of another direction: isolated, so the bidi
    # algorithm cannot reorder "l***@example.org" around it.
    env.filters["bdi"] = lambda s: markupsafe.Markup("<bdi>%s</bdi>") % s
    env.filters["wrap"] = wrap
    env.filters["columns"] = display_width
    # The direction of the templates' own words: the locale's when it has a catalog, else
    # that of the English they fall back to (an Urdu edition without one keeps "Top story" ltr).
    env.globals["ui_dir"] = text_direction(locale) if catalog_path(dirs, locale) else "ltr"
    env.globals["story_image"] = story_image
    env.globals["story_meta"] = functools.partial(story_meta, translations=trans)
    env.extend(
        locale_tag=locale,
        override_dir=override_dir,
        translations=trans,
        locale_envs={locale: env},
    )
    return env


def for_locale(env: jinja2.Environment, locale: str | None) -> jinja2.Environment:
    """``env`` in language ``locale`` (None: ``env``'s own); each language's environment is made once."""
    if not locale or locale == getattr(env, "locale_tag", None):
        return env
    cache: dict[str, jinja2.Environment] | None = getattr(env, "locale_envs", None)
    if cache is None:  # an environment not made by make_environment: no languages to offer
        return env
    found = cache.get(locale)
    if found is None:
        found = make_environment(getattr(env, "override_dir", None), locale)
        setattr(found, "locale_envs", cache)  # noqa: B010 - one cache for the family: any member finds every language
        cache[locale] = found
    return found


def env_translations(env: jinja2.Environment) -> gettext.NullTranslations:
    """The gettext translations ``env`` renders with (the templates' English when it has none)."""
    trans = getattr(env, "translations", None)
    return trans if isinstance(trans, gettext.NullTranslations) else gettext.NullTranslations()


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes in a terminal or a monospaced mail reader: East Asian wide
    and full-width characters count two, combining marks none."""
    return sum(_char_width(ch) for ch in str(text))


def _tokens(text: str) -> Iterator[tuple[str, bool]]:
    """``(token, space_before)``: words, and each wide character on its own (Chinese and
    Japanese text may break between any two of them; it has no spaces to break at)."""
    word, space = "", False
    for ch in text:
        if ch.isspace():
            if word:
                yield word, space
                word = ""
            space = True
        elif _char_width(ch) == 2:
            if word:
                yield word, space
                word, space = "", False
            yield ch, space
            space = False
        else:
            word += ch
    if word:
        yield word, space


def wrap(text: str, width: int = 72, indent: str = "") -> str:
    """Fill ``text`` to ``width`` display columns (the indent included), collapsing whitespace.

    A token wider than the line (a long URL) gets a line of its own, unbroken.
    """
    lines: list[str] = []
    line, used = indent, display_width(indent)
    start = used
    for token, space in _tokens(str(text)):
        w = display_width(token)
        gap = 1 if space and used > start else 0
        if used > start and used + gap + w > width:
            lines.append(line)
            line, used, gap = indent, start, 0
        line += " " * gap + token
        used += gap + w
    if used > start:
        lines.append(line)
    return "\n".join(lines)


@dataclass(frozen=True)
class Image:
    """An image as the email shows it: never wider than declared (no upscaling)."""

    url: str
    alt: str
    width: int
    height: int | None  # None: the proportions are unknown, browsers keep the image's own
    hero: bool


def story_image(story: Story, hero: bool = False) -> Image | None:
    """The image ``story`` shows: a hero across the column when ``hero`` is allowed and
    the declared width fills it, else a small side image, else none.

    An image of unknown size is shown as a side image only: it may be a 30 px avatar,
    so it never gets the full column (the stylesheet also keeps it at its own size).
    """
    if not story.image_url:
        return None
    w, h = story.image_width, story.image_height
    alt = story.image_alt or story.title
    if w is None:
        return Image(story.image_url, alt, SIDE_WIDTH, None, False)
    if w < MIN_IMAGE_WIDTH or (h is not None and h < MIN_IMAGE_HEIGHT):
        return None
    slot = HERO_WIDTH if hero and w >= HERO_WIDTH else SIDE_WIDTH
    width = min(w, slot)
    height = round(h * width / w) if h else None
    return Image(story.image_url, alt, width, height, slot == HERO_WIDTH)


def story_meta(
    story: Story, author: bool = False, topic: bool = False, translations: gettext.NullTranslations | None = None
) -> list[str]:
    """The parts of a story's meta line that are known (no separators left dangling).

    ``translations``: the reader's language (templates get it bound, see make_environment).
    """
    t = translations or gettext.NullTranslations()
    by = t.gettext("By %(author)s") % {"author": story.author} if author and story.author else ""
    updated = t.gettext("Updated since our alert") if story.updated_since_alert else ""
    parts = [updated, story.category if topic else "", story.source, by]
    if story.reading_minutes:
        n = story.reading_minutes
        parts.append(t.ngettext("%(num)d min read", "%(num)d min read", n) % {"num": n})
    return [p for p in parts if p]


@dataclass(frozen=True)
class LeadIn:
    """How a story opens: ``lead`` in bold, then ``rest`` (the summary, less the lead when it came from it)."""

    lead: str
    rest: str


def lead_in(story: Story) -> LeadIn | None:
    """The lead-in of ``story``: the editor's, followed by the whole summary; else the summary's
    first sentence, followed by the rest of it (never the sentence twice); None when neither fits
    (no summary, a summary of one sentence, or a first sentence too long to be a lead)."""
    if story.lead:
        return LeadIn(story.lead, story.summary)
    if not story.summary:
        return None
    first, rest = split_first_sentence(story.summary)
    if not rest or len(first) > AUTO_LEAD_MAX_CHARS:
        # A one-sentence summary in bold is a bold paragraph, not a lead-in.
        return None
    return LeadIn(first, rest)


def lead_ins(stories: list[Story], count: int) -> dict[int, LeadIn]:
    """Lead-ins of the first ``count`` of ``stories`` (in reading order), by story id."""
    found: dict[int, LeadIn] = {}
    for story in stories[: max(count, 0)]:
        lead = lead_in(story)
        if lead is not None:
            found[story.id] = lead
    return found


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


# The personal greeting, filled per recipient: with their first name, and without.
GREETINGS = ("Hi %(name)s,", "Hello,")


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str
    text: str
    markers: Markers
    # GREETINGS in the language of this render.
    greetings: tuple[str, str] = GREETINGS


def greetings(env: jinja2.Environment) -> tuple[str, str]:
    """GREETINGS in ``env``'s language."""
    t = env_translations(env)
    return (t.gettext("Hi %(name)s,"), t.gettext("Hello,"))


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
        # A subject is a header, not HTML: "Faith & Joy!" stays as written; message.py
        # encodes it for the header (RFC 2047).
        raw = env.overlay(autoescape=False).from_string(source).render(context)
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
    language: str = "en",
    lead_in_count: int = 0,
) -> dict[str, Any]:
    """The documented render context (see docs/templates.md).

    ``lead_in_count``: how many stories, the top story first, open with a lead-in (the
    digest's ``lead_ins``).
    """
    stories = ([view.top_story] if view.top_story else []) + [s for sec in view.sections for s in sec.stories]
    preheader = " · ".join(s.title for s in stories[:3])
    return {
        "digest": {
            "name": digest_name,
            "title": digest_title,
            # The archive as feeds (docs/web.md): linked from the web copy.
            "atom_url": f"{base_url}/archive/{digest_name}.atom",
            "json_url": f"{base_url}/archive/{digest_name}.json",
        },
        "edition": {
            "date": edition_date,
            "slot": slot,
            "archive_url": f"{base_url}/archive/{digest_name}/{slot}",
            "language": language,
            "dir": text_direction(language),
            # The line's start and end sides (text-align): mirrored right to left.
            "start": "right" if text_direction(language) == "rtl" else "left",
            "end": "left" if text_direction(language) == "rtl" else "right",
        },
        "top_story": view.top_story,
        "sections": view.sections,
        "story_count": view.story_count,
        "lead_ins": lead_ins(stories, lead_in_count),
        "overview": stories[:OVERVIEW_COUNT] if len(stories) >= OVERVIEW_MIN else [],
        "reading_minutes": sum(s.reading_minutes or 0 for s in stories),
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
    return Rendered(subject=subject, html=html, text=text, markers=markers, greetings=greetings(env))
