"""The reader as a phone shows it: headless Chromium at 360x780 with an Android user agent
and touch, in Korean and English, against a real `meshdrop read`.

Screenshots of the home, bundle, article, search (with results), share and not-found
pages go to tests/artifacts/reader-<page>-<lang>.png for a person to look at. What a phone
depends on is measured in the browser over DevTools (the pages themselves run no script):
nothing scrolls sideways, every link, button and field of the header and the page is at
least 44 CSS px tall, the title is the site's name only; and the dark theme, the larger
text switch and the order of language sections work. Plain HTTP checks cover the text
size link's bad inputs and the software's name in what a browser receives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from readerkit import DevTools, Node, build_node, fetch, reader_server
from test_reader_browser import NOWHERE, chromium, chromium_path, open_page, screenshot

from conftest import meshdrop_in_process

WIDTH, HEIGHT = 360, 780
ANDROID = (
    "Mozilla/5.0 (Linux; Android 13; SM-A145F) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
MIN_TAP = 44  # CSS px: WCAG 2.5.5's target size, what a thumb hits without a miss
SITE = {"en": "Library", "ko": "도서관"}
SEARCH = {"en": "overtime pay", "ko": "여권"}
ARTICLE = {"en": r"overtime(\.html| pay)", "ko": r"payslip\.ko\.html|임금명세서"}
SECTIONS = {"en": ["en", "mul", "ko"], "ko": ["ko", "mul", "en"]}
# A name for the node as phones on a Wi-Fi would reach it (the share page leaves out this
# machine's own loopback address), mapped to the test's reader.
LAN_NAME = "library.lan"

# What a phone depends on, measured in the page. Links inside an article's own sentences
# (rendered Markdown, text) are left out: they flow with the text, as on any web page.
LAYOUT = f"""((minTap) => {{
  // A reader page: its header and main. An article is the publisher's page itself:
  // only the reader's bar above and below it (the publisher's links are theirs).
  const scope = document.querySelector('header.top')
    ? ['header', 'main'] : ['body > nav', 'body > footer'];
  const controls = document.querySelectorAll(scope.flatMap(
    (s) => ['a', 'button', 'input', 'summary'].map((t) => s + ' ' + t)).join(', '));
  const small = [];
  for (const el of controls) {{
    if (el.closest('.md, pre')) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;  // not shown (a hidden field)
    if (r.height < minTap) small.push(el.tagName + ' "' + el.textContent.trim().slice(0, 40)
                                      + '" ' + r.height.toFixed(1) + 'px');
  }}
  const root = getComputedStyle(document.documentElement);
  return {{wide: document.documentElement.scrollWidth, title: document.title, small,
           controls: controls.length,
           lang: document.documentElement.lang, size: root.fontSize,
           background: root.backgroundColor, large: document.documentElement.className}};
}})({MIN_TAP})"""


@dataclass
class Phone:
    cdp: DevTools
    base: str
    lang: str

    async def go(self, url: str) -> None:
        loaded = self.cdp.expect("Page.loadEventFired")
        result = await self.cdp.send("Page.navigate", {"url": url})
        assert "errorText" not in result, result
        await asyncio.wait_for(loaded, 30)
        await asyncio.sleep(0.2)

    async def follow(self, selector: str, text: str = "") -> None:
        """Go where the first link matching ``selector`` (and ``text``, a regex) leads."""
        href = await self.cdp.evaluate(
            f"(() => {{ const re = new RegExp({text!r}, 'i');"
            f" const a = [...document.querySelectorAll({selector!r})]"
            f".find(a => re.test(a.textContent)); return a ? a.href : null; }})()"
        )
        assert href, f"no link {selector} {text!r} on {await self.cdp.evaluate('location.href')}"
        await self.go(href)

    async def check(self, page: str) -> dict[str, Any]:
        """Measure the page, assert what holds on every page, save its screenshot."""
        facts: dict[str, Any] = await self.cdp.evaluate(LAYOUT)
        assert facts["wide"] <= WIDTH, f"{page}: scrolls sideways ({facts['wide']} px)"
        assert facts["controls"] >= 2, f"{page}: nothing to tap was found"
        assert facts["small"] == [], f"{page}: tap targets under {MIN_TAP} px: {facts['small']}"
        assert facts["title"] == SITE[self.lang], f"{page}: title {facts['title']!r}"
        await self.screenshot(f"reader-{page}-{self.lang}.png")
        return facts

    async def screenshot(self, name: str) -> None:
        path = await screenshot(self.cdp, name)
        assert path.stat().st_size > 5_000, f"{name}: an empty screenshot"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return build_node(tmp_path_factory.mktemp("screens"), run=meshdrop_in_process)


@pytest.fixture(scope="module")
def base(node: Node) -> Iterator[str]:
    with reader_server(node.home) as url:
        yield url.rstrip("/")


def test_reader_on_a_phone_in_headless_chromium(base: str) -> None:
    chromium_path()
    asyncio.run(_on_a_phone(base))


async def _on_a_phone(base: str) -> None:
    with chromium(f"MAP {LAN_NAME} 127.0.0.1, {NOWHERE}") as port:
        session, cdp = await open_page(port)
        try:
            await cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 2, "mobile": True},
            )
            await cdp.send("Emulation.setUserAgentOverride", {"userAgent": ANDROID})
            await cdp.send("Emulation.setTouchEmulationEnabled", {"enabled": True})
            for lang in ("ko", "en"):
                await cdp.send(
                    "Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": lang}}
                )
                await _read(Phone(cdp, base, lang))
            await _measuring_can_fail(Phone(cdp, base, "en"))
        finally:
            await cdp.close()
            await session.close()


async def _read(phone: Phone) -> None:
    lang = phone.lang
    await phone.go(phone.base + "/")
    home = await phone.check("home")
    assert home["lang"] == lang
    sections = await phone.cdp.evaluate(
        "[...document.querySelector('section.pub').querySelectorAll('h3')].map(h => h.dataset.lang)"
    )
    assert sections == SECTIONS[lang], "sections not in the reader's language order"
    await _dark_and_large(phone)

    await _search(phone, SEARCH[lang])
    await phone.check("search")

    await phone.go(phone.base + "/")
    await phone.follow("main .list a", "Workers")
    bundle = await phone.check("bundle")
    assert bundle["lang"] == lang
    facts = await phone.cdp.evaluate(
        "({reading: document.querySelectorAll('.articles a').length,"
        " downloads: document.querySelectorAll('.downloads a[download]').length,"
        " inReading: document.querySelectorAll('.articles a[download]').length,"
        " folded: !document.querySelector('details.downloads').open,"
        " text: document.querySelector('main').innerText})"
    )
    assert facts["reading"] >= 4 and facts["inReading"] == 0, facts
    assert facts["downloads"] >= 6 and facts["folded"], facts
    # The downloads, unfolded, are as easy to hit as the rest.
    await phone.cdp.evaluate("document.querySelector('details.downloads').open = true")
    unfolded = await phone.cdp.evaluate(LAYOUT)
    assert unfolded["small"] == [] and unfolded["wide"] <= WIDTH, unfolded

    await phone.follow(".articles a", ARTICLE[lang])
    await phone.check("article")

    # A Markdown article is a page of the reader's, rendered on the node.
    await phone.go(phone.base + "/")
    await phone.follow("main .list a", "노동자 권리 안내")
    await phone.follow("main a.button")
    markdown = await phone.check("markdown")
    assert markdown["lang"] == lang
    assert await phone.cdp.evaluate("document.querySelector('.md h1').textContent") == (
        "여권은 당신의 것입니다"
    )

    await phone.go(phone.base.replace("127.0.0.1", LAN_NAME) + "/share")
    share = await phone.cdp.evaluate(
        "({qr: !!document.querySelector('.qr svg'),"
        " text: document.querySelector('main').innerText})"
    )
    assert share["qr"] and f"http://{LAN_NAME}:" in share["text"], share
    await phone.check("share")
    await phone.go(phone.base + "/no/such/page")
    await phone.check("notfound")


async def _search(phone: Phone, words: str) -> None:
    """Search with the page's own form, as a person would; the node indexes in the
    background, so an empty answer right after start is asked again (bounded)."""
    for _ in range(60):
        await phone.go(phone.base + "/")
        loaded = phone.cdp.expect("Page.loadEventFired")
        await phone.cdp.evaluate(
            f"document.querySelector('input[name=q]').value = {words!r};"
            "document.querySelector('form.search').requestSubmit(); true"
        )
        await asyncio.wait_for(loaded, 30)
        found = await phone.cdp.evaluate("document.querySelectorAll('main li a').length")
        if found:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"search for {words!r} found nothing")


async def _dark_and_large(phone: Phone) -> None:
    """The dark theme follows the phone's setting; the size link makes all text larger
    and comes back to the same page."""
    await phone.cdp.send(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    dark = await phone.cdp.evaluate(LAYOUT)
    await phone.screenshot(f"reader-home-{phone.lang}-dark.png")
    await phone.cdp.send("Emulation.setEmulatedMedia", {"features": []})
    light = await phone.cdp.evaluate(LAYOUT)
    assert light["background"] == "rgb(255, 255, 255)"
    assert dark["background"] == "rgb(18, 18, 18)"

    await phone.follow("header a[href^='/text/']")
    large = await phone.cdp.evaluate(LAYOUT)
    assert large["large"] == "large" and large["size"] == "20px", large
    assert large["wide"] <= WIDTH and large["small"] == [], large
    assert await phone.cdp.evaluate("location.pathname") == "/"
    await phone.screenshot(f"reader-home-{phone.lang}-large.png")
    await phone.follow("header a[href^='/text/']")
    normal = await phone.cdp.evaluate(LAYOUT)
    assert normal["large"] == "" and normal["size"] == "16px", normal


async def _measuring_can_fail(phone: Phone) -> None:
    """The measure above catches a link that is too small (a check that cannot fail
    proves nothing): an unstyled link added to the page is reported."""
    await phone.go(phone.base + "/share")
    await phone.cdp.evaluate(
        "(() => { const a = document.createElement('a'); a.href = '/'; a.textContent = 'x';"
        " document.querySelector('main').append(a); })()"
    )
    facts = await phone.cdp.evaluate(LAYOUT)
    assert len(facts["small"]) == 1 and facts["small"][0].startswith('A "x"'), facts


# Plain HTTP


def test_text_size_link_sets_a_session_cookie_and_comes_back(base: str) -> None:
    reply = fetch(base, "/text/large?next=" + quote("/share?x=1", safe=""))
    assert reply.status == 303 and reply.header("Location") == "/share?x=1"
    [cookie] = reply.all("Set-Cookie")
    assert cookie.startswith("text=large;")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()
    page = fetch(base, "/share", Cookie="text=large").text
    assert '<html lang="en" class="large">' in page
    assert 'href="/text/normal?next=/share"' in page
    assert '<html lang="en">' in fetch(base, "/share", Cookie="text=huge").text


@pytest.mark.parametrize(
    "path",
    ["/text/huge", "/text/", "/text/LARGE", "/text/large/more", "/text/%6Carge%00"],
)
def test_text_size_link_refuses_an_unknown_size(base: str, path: str) -> None:
    reply = fetch(base, path)
    assert reply.status == 404 and reply.all("Set-Cookie") == []
    assert "There is nothing at this address on this node." in reply.text


@pytest.mark.parametrize("target", ["//127.0.0.2/x", "http://127.0.0.2/", "/\\127.0.0.2", "x"])
def test_text_size_link_never_redirects_off_the_node(base: str, target: str) -> None:
    reply = fetch(base, f"/text/large?next={quote(target, safe='')}")
    assert reply.status == 303 and reply.header("Location") == "/"


def test_nothing_a_browser_receives_names_the_software(base: str) -> None:
    """The reader's own pages, stylesheet and icon never name the software (publisher
    content is shown as published: the sample bundles may name it, so pages listing
    content are checked outside it, in their header, title and footer)."""
    home = fetch(base, "/", Accept_Language="ko").text
    assets = sorted(set(_static_links(home)))
    assert len(assets) == 2, assets
    for path in assets:
        body = fetch(base, path).body
        assert b"meshdrop" not in body.lower(), path
        assert not body.startswith(b"/*"), f"{path} starts with a comment"
    for lang in ("en", "ko"):
        for path in ("/share", "/no/such/page", "/search"):
            page = fetch(base, path, Accept_Language=lang).text
            assert "meshdrop" not in page.lower(), (lang, path)
            assert f"<title>{SITE[lang]}</title>" in page, (lang, path)
        chrome = fetch(base, "/", Accept_Language=lang).text
        head, _, rest = chrome.partition("<main>")
        foot = rest.partition("</main>")[2]
        assert "meshdrop" not in (head + foot).lower(), lang
        assert f"<title>{SITE[lang]}</title>" in head, lang


def _static_links(html: str) -> list[str]:
    return [
        part.split('"', 1)[0] for part in html.split('href="')[1:] if part.startswith("/static/")
    ]
