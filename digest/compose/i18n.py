"""The reader's language: gettext catalogs of the templates' own strings, dates and numbers.

Catalogs are gettext ``.po`` files, ``locale/LANG/LC_MESSAGES/messages.po`` beside the
templates (an override directory's ``locale/`` is searched first). They are read with
Babel and compiled in memory when a language is first used: the repository holds no
compiled ``.mo`` files, and an edited ``.po`` counts from the next start.

A locale without a catalog still gets its own dates and numbers (Babel knows them);
its strings fall back to the English of the templates.
"""

from __future__ import annotations

import functools
import gettext
import io
from datetime import date
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

DOMAIN = "messages"
LOCALE_DIR = "locale"
# Primary language subtags written right to left.
RTL_LANGUAGES = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "ks", "ku", "ps", "sd", "syr", "ug", "ur", "yi"})


def N_(message: str) -> str:
    """Mark ``message`` for extraction (``make messages``) where it is written; it is
    translated where it is shown (a template's ``_(title)``)."""
    return message


def text_direction(language: str) -> str:
    """``rtl`` for a BCP 47 tag of a right-to-left language, else ``ltr``."""
    primary = language.split("-")[0].split("_")[0].casefold()
    return "rtl" if primary in RTL_LANGUAGES else "ltr"


@functools.lru_cache(maxsize=128)
def babel_locale(tag: str) -> Locale:
    """The Babel locale of BCP 47 ``tag`` (``pt-BR``); English when Babel does not know it.

    Stored tags were validated (:func:`digest.core.settings.check_locale`); the
    fallback only keeps a hand-edited row or config from stopping a send.
    """
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (ValueError, TypeError, UnknownLocaleError):
        return Locale("en")


def long_date(day: date, tag: str) -> str:
    """``day`` written out in language ``tag``: English keeps the house style ("Wednesday, 25
    November 2026"), other languages their own full date ("Mittwoch, 25. November 2026")."""
    loc = babel_locale(tag)
    return format_date(day, "EEEE, d MMMM y" if loc.language == "en" else "full", locale=loc)


def catalog_dirs(builtin: Path, override: str | Path | None) -> tuple[Path, ...]:
    """Where catalogs are looked for, in order: the override directory's, then the built-in ones."""
    dirs = [Path(override) / LOCALE_DIR] if override else []
    return (*dirs, builtin / LOCALE_DIR)


def catalog_path(dirs: tuple[Path, ...], tag: str) -> Path | None:
    """The ``.po`` file for ``tag``: the exact locale (``pt_BR``) first, then its language (``pt``)."""
    loc = babel_locale(tag)
    for d in dirs:
        for name in dict.fromkeys((str(loc), loc.language)):
            po = d / name / "LC_MESSAGES" / f"{DOMAIN}.po"
            if po.is_file():
                return po
    return None


@functools.lru_cache(maxsize=64)
def translations(dirs: tuple[Path, ...], tag: str) -> gettext.NullTranslations:
    """The translations of ``tag`` from the first catalog found in ``dirs``; none: the templates' English."""
    po = catalog_path(dirs, tag)
    if po is None:
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=babel_locale(tag), domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out, as msgfmt does
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def available_locales(dirs: tuple[Path, ...]) -> list[str]:
    """The languages that have a catalog (BCP 47 tags), sorted; English always."""
    found = {"en"}
    for d in dirs:
        if d.is_dir():
            found.update(p.parent.parent.name.replace("_", "-") for p in d.glob(f"*/LC_MESSAGES/{DOMAIN}.po"))
    return sorted(found)


def negotiate(accept_language: str, available: list[str]) -> str | None:
    """The best of ``available`` (BCP 47 tags) for an HTTP ``Accept-Language`` header, or None.

    ``de-AT`` asks for ``de`` too (Babel's negotiation); ``q=0`` refuses a language.
    """
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and tag != "*" and q > 0:
            ranked.append((-q, i, tag.strip()))
    wanted = [tag for _, _, tag in sorted(ranked)]
    found = Locale.negotiate(wanted, available, sep="-") if wanted else None
    return None if found is None else "-".join(p for p in (found.language, found.script, found.territory) if p)


def language_name(tag: str) -> str:
    """``tag``'s language named in itself (``Deutsch``, ``العربية``), for a language picker."""
    loc = babel_locale(tag)
    name = loc.get_display_name(loc) or tag
    return name[:1].upper() + name[1:]
