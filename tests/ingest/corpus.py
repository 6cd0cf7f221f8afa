"""The corpus of real public feeds (``tests/fixtures/feeds/``) and what importing each must store.

Other tests import this (the round trip to the e-mail extends it): :func:`corpus` lists
every feed file with the items it holds and, for each item, what the store must hold
afterwards: its title and link exactly, a summary starting with the given text (non-ASCII
intact; "" when the item has no text) and the language of the feed's items, or the
title of the story it is merged into (same link, see docs/import-formats.md). Items an
import must reject would be listed in ``rejected`` with the documented reason; none of
this corpus is. Every expected value was checked by hand against its file.
Where the sources come from: ``tests/fixtures/feeds/SOURCES.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FEEDS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"


@dataclass(frozen=True)
class Item:
    """One item of a feed file and what the store must hold for it."""

    title: str
    link: str | None
    summary: str = ""  # the stored summary starts with this
    merged_into: str = ""  # title of the story this item is merged into (same link), if any


@dataclass(frozen=True)
class CorpusFeed:
    """One feed file of the corpus."""

    name: str
    items: tuple[Item, ...]
    language: str = ""  # the language stored for its items ("" = unknown)
    warnings: tuple[str, ...] = ()  # what the import must warn about (nothing lost)
    rejected: tuple[tuple[int, str], ...] = ()  # (item index, documented reason)

    @property
    def path(self) -> Path:
        return FEEDS_DIR / self.name

    @property
    def stored(self) -> tuple[Item, ...]:
        """The items that become stories of their own."""
        return tuple(i for i in self.items if not i.merged_into)

    @property
    def merged(self) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.merged_into)


def corpus() -> list[CorpusFeed]:
    """Every feed of the corpus, in file-name order."""
    return list(_CORPUS)


def import_corpus(db_url: str, feeds: list[CorpusFeed], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``digest articles import`` of the given corpus feeds into ``db_url``, through the entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_") or k.startswith("DIGEST_TEST_")}
    env.update(DIGEST_DATABASE_URL=db_url, COLUMNS="400")  # rich wraps at 80 columns on a pipe
    return subprocess.run(
        [sys.executable, "-m", "digest.cli.main", "articles", "import", *(str(f.path) for f in feeds)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


_CORPUS: tuple[CorpusFeed, ...] = (
    CorpusFeed(
        "4fsod-blogger.atom",
        language="",
        items=(
            Item(
                "4FSOD Documentary: Bloopers and Stuff",
                "http://4fsodonline.blogspot.com/2007/12/4fsod-documentary-bloopers-and-stuff.html",
                "Even the 4 Fighting Serpents of Death do",
            ),
            Item(
                "Special Feature: Jamie's Present",
                "http://4fsodonline.blogspot.com/2007/12/special-feature-jamies-present.html",
                "Synopsis: Anthony has finally picked out",
            ),
        ),
    ),
    CorpusFeed(
        "curtclifton.json",
        language="",
        warnings=("has no timezone; kept as undated",),
        items=(
            Item(
                "Twitter Quitter",
                "http://www.curtclifton.net/twitter-quitter",
                "I’ve decided to close my Twitter account",
            ),
            Item(
                "These are a Few of My Stateful Machines",
                "http://www.curtclifton.net/these-are-a-few-of-my-stateful-machines",
                "I’m excited to be presenting at the inau",
            ),
        ),
    ),
    CorpusFeed(
        "delicious-tag.rdf",
        language="",
        items=(
            Item("Greenbelt - Homepage Section", "http://www.greenbelt.org.uk/", ""),
            Item(
                "Greenbelt festival (uk)",
                "http://www.greenbelt.org.uk/",
                "",
                merged_into="Greenbelt - Homepage Section",
            ),
            Item("Natuerlichwien.at - Rundumadum", "http://www.natuerlichwien.at/rundumadum/dergruenguertel/", ""),
        ),
    ),
    CorpusFeed(
        "draw-down-shop.atom",
        language="en",
        items=(
            Item(
                "Slanted 44: Type Fashion",
                "https://draw-down.com/products/slanted-44-type-fashion",
                "Vendor: Curated Type: Periodical Price: ",
            ),
            Item(
                "Revue Faire — no. 47 & 48",
                "https://draw-down.com/products/revue-faire-no-47-48",
                "Vendor: Curated Type: Periodical Price: ",
            ),
        ),
    ),
    CorpusFeed(
        "fboes-3960.json",
        language="de-DE",
        items=(
            Item(
                "Lecker, lecker",
                "https://journal.3960.org/posts/2020-02-21-lecker-lecker/",
                "Da ist es zwar nicht ganz billig, dafür ",
            ),
            Item(
                "„Sabine“ am Flughafen Amsterdam",
                "https://journal.3960.org/posts/2020-02-10-sabine-flughafen-amsterdam/",
                "METAR-Informationen sind nicht nur für d",
            ),
        ),
    ),
    CorpusFeed(
        "fcutrecht-phpxml.rss",
        language="nl-NL",
        items=(
            Item(
                "Serdar Gözübüyük scheidsrechter bij FC Twente - FC Utrecht",
                "https://www.fcutrecht.net/nieuws/serdar-g-z-b-y-k-scheidsrechter-bij-fc-twente-fc-utrecht~8805",
                "1️⃣ Serdar Gözübüyük 🚩 Joost van Zuilen ",
            ),
            Item(
                "LIVESTREAM Jong FC Utrecht - La Louvière Centre",
                "https://www.fcutrecht.net/nieuws/livestream-jong-fc-utrecht-la-louvi-re-centre~8802",
                "",
            ),
            Item(
                "BREAKING Gyrano Kerk vertrekt naar Lokomotiv Moskou",
                "https://www.fcutrecht.net/nieuws/breaking-gyrano-kerk-vertrekt-naar-lokomotiv-moskou~8795",
                "Gyrano Kerk is definitief speler van Lok",
            ),
        ),
    ),
    CorpusFeed(
        "flickr-atom03.xml",
        language="",
        items=(
            Item("Oma and James", "http://www.flickr.com/photos/30484029@N00/30367516/", "kstewart posted a photo:"),
            Item(
                "Lan Rover posted a photo:",
                "http://www.flickr.com/photos/buddscreek/21376174/",
                "Lan Rover posted a photo:",
            ),
            Item(
                "Lunch with Kari & James, café in the crypt of St Martin in the fields",
                "http://www.flickr.com/photos/fidothe/16516618/",
                "fidothe posted a photo:",
            ),
        ),
    ),
    CorpusFeed(
        "grwifi-latin1.atom",
        language="en",
        items=(
            Item(
                "Hotspot Details Updated: Sweetwaters",
                "http://grwifi.net/location/sweetwaters",
                "The details of the WiFi hotspot at: Swee",
            ),
            Item(
                "Hotspot Details Updated: The Boss Sports Bar & Grille",
                "http://grwifi.net/location/boss-sports-bar",
                "The details of the WiFi hotspot at: The ",
            ),
        ),
    ),
    CorpusFeed(
        "heise-rss090.rdf",
        language="",
        items=(
            Item(
                "Facebook f8: Künstliche Intelligenz räumt den Newsfeed auf",
                "http://www.heise.de/newsticker/meldung/Facebook-f8-Kuenstliche-Intelligenz-raeumt-den-Newsfeed-auf-3173304.html?wt_mc=rss.ho.beitrag.rdf",
                "Die Keynotes des zweiten Tags von Facebo",
            ),
            Item(
                'Toyota entwirft ein Elektroauto für die "Generation Z"',
                "http://www.heise.de/newsticker/meldung/Toyota-entwirft-ein-Elektroauto-fuer-die-Generation-Z-3173103.html?wt_mc=rss.ho.beitrag.rdf",
                "Ein Auto für Jungunternehmer, die es gut",
            ),
            Item(
                'Google "Ziele": Kalender-App übernimmt die Terminplanung',
                "http://www.heise.de/newsticker/meldung/Google-Ziele-Kalender-App-uebernimmt-die-Terminplanung-3172116.html?wt_mc=rss.ho.beitrag.rdf",
                "Google Kalender soll mit der neuen Funkt",
            ),
            Item(
                "Patchday: Microsoft stopft 13 Lücken, Adobe lässt es ruhig angehen",
                "http://www.heise.de/newsticker/meldung/Patchday-Microsoft-stopft-13-Luecken-Adobe-laesst-es-ruhig-angehen-3171881.html?wt_mc=rss.ho.beitrag.rdf",
                "Microsoft stellt Sicherheitspatches für ",
            ),
        ),
    ),
    CorpusFeed(
        "hoder-persian.rss",
        language="fa",
        items=(
            Item(
                "لينکدونی | جلسهی امریکن انترپرایز برای تقسیم قومی ایران",
                "http://www.aei.org/events/type.upcoming,eventID.1166,filter.all/event_detail.asp",
                "چطور بعضیها فکر میکنند دست راستیهای آمری",
            ),
            Item(
                "لينکدونی | به صبحانه آگهی بدهید",
                "http://www.adbrite.com/mb/commerce/purchase_form.php?opid=24346&afsid=1",
                "خیلی ارزان و راحت است",
            ),
            Item(
                'لينکدونی | رشد وب در سال 2005 از همیشه بیشتر بوده است" بی.بی.سی',
                "http://news.bbc.co.uk/2/hi/technology/4325918.stm",
                "",
            ),
            Item(
                "پروژهی هاروارد، قدم دوم",
                "http://editormyself.info/archives/2005/10/051012_014641.shtml",
                "اگر یادتان باشد چند وقت پیش نوشتم که دان",
            ),
        ),
    ),
    CorpusFeed(
        "iprogrammer.rss",
        language="",
        warnings=("not well-formed XML",),
        items=(
            Item(
                "MotionDisco For Extreme LocoManipulation",
                "http://www.i-programmer.info/news/169-robotics/18934-motiondisco-from-atari-labs.html",
                "",
            ),
        ),
    ),
    CorpusFeed(
        "jsyoo5b-korean.rss",
        language="ko",
        items=(
            Item(
                "Tucker의 Go 언어 프로그래밍 16장 요약",
                "https://devlog.jsyoo5b.net/ko/posts/golang/musthave/ch16/",
                "『Tucker의 Go 언어 프로그래밍』 스터디 요약 노트입니다. 16장. 패키지",
            ),
            Item(
                "[iamroot] 1주차 스터디 회고 (리눅스 커널 내부구조)",
                "https://devlog.jsyoo5b.net/ko/posts/linux-kernel/iamroot/week1-lki/",
                "iamroot 17기 스터디를 다행히 아직 참여하고 있다.",
            ),
            Item(
                "내 첫 리눅스 커널 기여",
                "https://devlog.jsyoo5b.net/ko/posts/linux-kernel/my-first-commit/",
                "리눅스 커널 소스에 첫 기여를 한 기념으로",
            ),
            Item(
                "[책 리뷰] 조엘 온 소프트웨어",
                "https://devlog.jsyoo5b.net/ko/posts/review/book-joel-on-software/",
                "본 리뷰는 조엘 온 소프트웨어 책에 대한 리뷰입니다.",
            ),
        ),
    ),
    CorpusFeed(
        "matcha-photos.json",
        language="",
        items=(
            Item("Les chatons !", "https://nicolinuxfr.github.io/Les-chatons/", "Ils sont vraiment trop mignons…"),
            Item(
                "Matcha au début",
                "https://nicolinuxfr.github.io/Matcha-au-debut/",
                "Quand Matcha a débarqué chez nous, elle ",
            ),
            Item(
                "Matcha aujourd'hui", "https://nicolinuxfr.github.io/matcha-aujourdhui/", "Une photo récente de Matcha."
            ),
        ),
    ),
    CorpusFeed(
        "microblog-kultalahti.json",
        language="",
        items=(
            Item(
                "OK, self-hosted Forgejo instance set up.",
                "https://nikokultalahti.com/2026/06/09/ok-selfhosted-forgejo-instance-set/",
                "OK, self-hosted Forgejo instance set up.",
            ),
            Item(
                "Has anyone successfully activated an eSIM on GrapheneOS?",
                "https://nikokultalahti.com/2025/12/19/has-anyone-successfully-activated-an/",
                "Has anyone successfully activated an eSI",
            ),
            Item(
                "Businessman vs Fisherman",
                "https://nikokultalahti.com/2025/12/09/businessman-vs-fisherman/",
                "Love it.",
            ),
        ),
    ),
    CorpusFeed(
        "monkeydom.rss",
        language="",
        items=(
            Item(
                "TCMPortMapper 2018 Edition",
                "https://github.com/monkeydom/TCMPortMapper",
                "About 10 years ago, I released one of my",
            ),
            Item(
                "Autolayout and Complexity",
                "https://coding.monkeydom.de/posts/2014/02/05/autolayout-and-complexity",
                "I recently dipped my toes into some auto",
            ),
        ),
    ),
    CorpusFeed(
        "ninoseki-japanese.json",
        language="ja",
        items=(
            Item(
                "Censysで日本国内におけるCoinhiveの使用状況を調べてみた",
                "https://ninoseki.github.io/2017/11/13/cryptojacking-in-japan.html",
                "Enisa がCryptojacking に関するレポートを出すなど、Crypt",
            ),
            Item(
                "PHP(CakePHP, FuelPHP, Symphony, etc.)のデバッグ機能を本番環境で有効にしてはいけない",
                "https://ninoseki.github.io/2018/03/05/php-debugging.html",
                "We don't enable this in production mode,",
            ),
            Item(
                "Head First MISP - MISP入門 -",
                "https://ninoseki.github.io/2018/09/15/head-first-misp.html",
                "OSSであり、コミュニティドリブンで開発されていますが、主となる開発母体はルクセ",
            ),
        ),
    ),
    CorpusFeed(
        "noureddin-arabic.atom",
        language="ar",  # no xml:lang: told by the script
        items=(
            Item(
                "كف عن محاولة جعل الشبكات الاجتماعية «تنجح»",  # its RLE/PDF controls dropped
                "https://noureddin.github.io/w/network-success",
                "جدّت أمور كثيرة مع سقوط تويتر وريدت (Reddit)، وظهور بلوسكاي (Bluesky)",
            ),
            Item(
                "Syncthing: الأستاذ في إزالة تكرار البيانات",
                "https://noureddin.github.io/w/syncthing-deduplication",
                "Syncthing هو برنامج حر ومفتوح المصدر للمزامنة المعمّاة",
            ),
            Item(
                "نهاية شركة لبري (LBRY Inc)",
                "https://noureddin.github.io/w/lbry-end",
                "شركة لبري ستموت لا محالة. فقد خسرت قضية",
            ),
            Item(
                "كيف تقتل شبكة لامركزية (مثل العالم الاتحادي Fediverse)",
                "https://noureddin.github.io/w/kill-fediverse",
                "نحن في عام ٢٠٢٣م. كل الإنترنت في يد إمبراطورية GAFAM. كله؟",
            ),
        ),
    ),
    CorpusFeed(
        "peertube-tchncs.rss",
        language="",
        items=(
            Item(
                "Max schaukelt",
                "https://tube.tchncs.de/w/bUrNgv89egmbvC5Ht6z7G9",
                "Max, das bunte Strickhorn, schaukelt mit",
            ),
        ),
    ),
    CorpusFeed(
        "picofeed-iso8859-15.rss",
        language="",
        items=(Item("RSS Tutorial", "https://www.google.com", "éàùç€@ïî"),),
    ),
    CorpusFeed(
        "qq-news-gb2312.rss",
        language="zh-CN",
        items=(
            Item(
                "最高法：适时出台防卫过当的认定标准 鼓励正当防卫",
                "http://news.qq.com/a/20180918/006660.htm",
                "中新网客户端9月18日电(记者阚枫)最高人民法院日前发布《关于在司法解释中",
            ),
            Item(
                "1至8月，全国共查办“假记者”刑事案件80多起",
                "http://news.qq.com/a/20180918/000817.htm",
                "针对基层干部群众深恶痛绝的“假媒体、假记者站、假记者”",
            ),
            Item(
                '【风从海上来】宁波：为海洋经济发展"打样"',
                "http://news.qq.com/a/20180917/013656.htm",
                "这是一座古老而充满活力的城市，这是一座美丽而宜居的城市，",
            ),
            Item("2018国家网络安全宣传周宣传片", "http://news.qq.com/a/20180917/012928.htm", ""),
        ),
    ),
    CorpusFeed(
        "redblobgames.atom",
        language="",
        items=(
            Item(
                "Optimizing page size",
                "https://www.redblobgames.com/blog/2026-03-25-optimizing-page-size/",
                "While working on my SDF font guide, I no",
            ),
        ),
    ),
    CorpusFeed(
        "reddit-homelab.atom",
        language="",
        items=(
            Item(
                "Any reason to keep 1G connections to my servers?",
                "https://ud.reddit.com/r/homelab/comments/157kyrd/any_reason_to_keep_1g_connections_to_my_servers/",
                "Hello all, I recently acquired a 40G swi",
            ),
            Item(
                "Are there any 1u cases that are ATX and support 2 3.5” hard drives?",
                "https://ud.reddit.com/r/homelab/comments/157knaz/are_there_any_1u_cases_that_are_atx_and_support_2/",
                "Hi i’m looking to build a server that i ",
            ),
        ),
    ),
    CorpusFeed(
        "roimor-hebrew.rss",
        language="he",
        items=(
            Item("למה להתבונן?", "https://blog.roi-mor.com/he/post/2026-03-31-why-meditate/", ""),
            Item(
                "יפה ולא-מושלם",
                "https://blog.roi-mor.com/he/post/2025-09-26-zen-aesthetics/",
                "זה לא אנושי לא להתחרט על חלוף החיים. ובאותה מידה",
            ),
            Item(
                "אודות",
                "https://blog.roi-mor.com/he/about/",
                "שמי רועי מור. אחרי שנים בהייטק ובסטארטאפים ישראליים,",
            ),
        ),
    ),
    CorpusFeed(
        "rosemary-orchard.json",
        language="",
        items=(
            Item(
                "Fusion 18: September is Coming",
                "https://www.rosemaryorchard.com/elsewhere/fusion-september-is-coming",
                "This week I was on the Relay FM member's",
            ),
            Item(
                "Automators 4: First Look at Siri Shortcuts",
                "https://www.rosemaryorchard.com/blog/automators-4-first-look-at-siri-shortcuts",
                "Episode 4 of automators is all about Sho",
            ),
        ),
    ),
    CorpusFeed(
        "same-link-guids.rss",
        language="",
        items=(
            Item("Entry One", "http://www.example.com/blog/post/1", "Blah blah blah."),
            Item(
                "Entry One Again(with same link but different guid!)",
                "http://www.example.com/blog/post/1",
                "Blah blah blah.",
                merged_into="Entry One",
            ),
            Item("Entry Two", "http://www.example.com/blog/post/2", "Blah blah blah."),
        ),
    ),
    CorpusFeed(
        "sixapart-japanese.rss",
        language="ja",
        items=(
            Item(
                "ファイブ・ディーが、Movable Typeでブログプロモーションをスタート",
                "http://www.sixapart.jp/news/2005/10/07-1909.html",
                "ファイブ・ディーは、Movable Typeで構築したプロモーション ブログ『宮",
            ),
            Item(
                "Movable Type 3.2日本語版の提供を開始",
                "http://www.sixapart.jp/news/2005/09/29-1530.html",
                "シックス・アパートは、Movable Type 3.2日本語版の提供を開始いたし",
            ),
            Item(
                "Six [days] Apart Week",
                "http://www.sixapart.jp/news/2005/09/16-1941.html",
                "本日、9月16日はSix Apartの創業者ミナ・トロットの誕生日です。 私たち",
            ),
        ),
    ),
    CorpusFeed(
        "spiegel-update.rss",
        language="de",
        items=(
            Item(
                "07.02. – die Wochenvorschau: Lockdown-Verlängerung, Kriegsverbrecher vor Gericht, "
                "Super Bowl, Karneval",
                "https://omny.fm/shows/spiegel-update-die-nachrichten/07-02-die-wochenvorschau-lockdown-verl-ngerung-kri",
                "Die wichtigsten Nachrichten aus der SPIE",
            ),
        ),
    ),
    CorpusFeed(
        "technorati-tag.rss",
        language="",
        items=(
            Item(
                "Greenbelt",
                "http://maggidawn.typepad.com/maggidawn/2005/07/greenbelt.html",
                "So if the plan goes according to plan (!",
            ),
            Item(
                "Walking along the Greenbelt",
                "http://pictureshomeless.blogspot.com/2005/06/walking-along-greenbelt.html",
                "[IMG] Photo of homeless man walking near",
            ),
        ),
    ),
    CorpusFeed(
        "vimeo-failla.rss",
        language="en-US",
        items=(
            Item(
                "Oregon Harvest Update and Fall Release Date Set",
                "https://vimeo.com/1013595996",
                "Also check the email for a few important",
            ),
        ),
    ),
    CorpusFeed(
        "volpeon-notebook.rss",
        language="",
        items=(
            Item("Destructive Convenience", "https://volpeon.ink/notebook/dangerous-convenience/", ""),
            Item(
                "Microblogging's core design is inherently bad",
                "https://volpeon.ink/notebook/microblogging-misdesign/",
                "",
            ),
        ),
    ),
    CorpusFeed(
        "w3c-blog.rss",
        language="en",
        items=(
            Item(
                "Crafting WCAG 3 for more accessible user experiences",
                "https://www.w3.org/blog/2026/crafting-wcag-3-for-more-accessible-user-experiences/",
                "In this post, W3C's Web Accessibility In",
            ),
        ),
    ),
    CorpusFeed(
        "xmlcom-rss10.rdf",
        language="",
        items=(
            Item(
                "Processing Inclusions with XSLT",
                "http://xml.com/pub/2000/08/09/xslt/xslt.html",
                "Processing document inclusions with gene",
            ),
            Item(
                "Putting RDF to Work",
                "http://xml.com/pub/2000/08/09/rdfdb/index.html",
                "Tool and API support for the Resource De",
            ),
        ),
    ),
)
