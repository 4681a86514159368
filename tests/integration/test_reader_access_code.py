"""The reader's access code (``--reader-code``, issue 16): the installed `meshdrop read`
and `meshdrop node` on 127.0.0.1, real HTTP requests. Without the cookie every reader page
is the code page and shows nothing of the library; the right code sets the cookie and goes
back to a local path only; wrong codes are counted per client address (each test speaks
from a loopback address of its own, 127.0.0.N, so their tries never add up); the peer API
and the node's status are not behind the code."""

from __future__ import annotations

import html
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from lankit import Nodes
from readerkit import Node, Reply, build_node, links, reader_server

from conftest import meshdrop_in_process, run_meshdrop
from meshdrop.reader.accesscode import (
    FORGET_SECONDS,
    LOCK_SECONDS,
    GuessLimit,
    address_key,
    local_target,
)

CODE = "river 4417"
CODE_PAGE = "Enter the code"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    return build_node(tmp_path_factory.mktemp("reader-code"), run=meshdrop_in_process)


@pytest.fixture(scope="module")
def base(node: Node) -> Iterator[str]:
    with reader_server(node.home, "--reader-code", CODE) as url:
        yield url


def request(
    base: str,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    source: str = "127.0.0.1",
    **headers: str,
) -> Reply:
    """One HTTP/1.1 request from the loopback address ``source``."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=20, source_address=(source, 0)
    )
    sent = {k.replace("_", "-"): v for k, v in headers.items()}
    if body is not None:
        sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def send_code(
    base: str, code: str, next_path: str = "/", source: str = "127.0.0.1", **headers: str
) -> Reply:
    form = urlencode({"code": code, "next": next_path}).encode()
    return request(base, "/unlock", "POST", form, source, **headers)


def cookie_of(reply: Reply) -> str:
    """``access=TOKEN`` from the answer's one Set-Cookie."""
    [cookie] = reply.all("Set-Cookie")
    return cookie.split(";", 1)[0]


def assert_code_page(reply: Reply, node: Node, status: int = 403, asked: str = "") -> None:
    """The code page, and nothing of the library in it but the path the browser asked for
    (the form and the language link come back to it)."""
    assert reply.status == status, reply
    assert reply.header("Content-Type") == "text/html; charset=utf-8"
    assert reply.header("Cache-Control") == "no-store"
    assert "script-src 'none'" in (reply.header("Content-Security-Policy") or "")
    assert reply.all("Set-Cookie") == []
    html = reply.text
    assert 'action="/unlock" method="post"' in html and 'name="code"' in html
    if asked:
        html = html.replace(quote(asked, safe="/"), "").replace(asked, "")
    assert "<script" not in html
    # Nothing of the library: no bundle, title, publisher, fingerprint or search box.
    for secret in (
        "/b/",
        "Workers",
        "Leaky Press",
        "노동자 권리",
        "Tricky",
        "rights-ko",
        node.fingerprint[:9],
        node.fingerprint.replace("-", "")[:16],
        'name="q"',
    ):
        assert secret not in html, secret


# Without the cookie


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/search?q=passport",
        "/share",
        "/b/{id}/",
        "/b/{id}",
        "/b/{id}/v/{id}",
        "/b/{id}/f/{id}",
        "/b/{id}/f/{id}?download",
        "/b/{fp}/rights-ko/",  # the old form, naming the bundle
        "/nothing/here",
        "/unlock",
    ],
)
def test_every_reader_page_without_the_cookie_is_the_code_page(
    node: Node, base: str, path: str
) -> None:
    asked = path.format(fp=node.fingerprint.replace("-", ""), id="a" * 16)
    reply = request(base, asked)
    assert_code_page(reply, node, asked=asked)
    assert f'name="next" value="{asked}"' in reply.text  # comes back here once unlocked
    head = request(base, asked, "HEAD")
    assert head.status == 403 and head.body == b""


def test_a_made_up_cookie_gets_the_code_page(node: Node, base: str) -> None:
    assert_code_page(request(base, "/", Cookie="access=" + "A" * 43), node)
    assert_code_page(request(base, "/", Cookie=f"access={CODE}"), node)  # the code is no token


def test_the_code_pages_own_stylesheet_and_icon_stay_reachable(base: str) -> None:
    html = request(base, "/").text
    assets = re.findall(r'href="(/static/[^"]+)"', html)
    assert len(assets) == 2
    for asset in assets:
        reply = request(base, asset)
        assert reply.status == 200 and reply.body, asset


# The code


def test_a_wrong_code_is_refused_with_the_same_page_and_a_line(node: Node, base: str) -> None:
    reply = send_code(base, "river 4418", "/share", source="127.0.0.2")
    assert_code_page(reply, node)
    assert "That code is not right. Try again." in reply.text
    assert 'name="next" value="/share"' in reply.text
    assert "river 4418" not in reply.text  # what was typed is not shown back
    empty = send_code(base, "", "/share", source="127.0.0.2")
    assert_code_page(empty, node)


def test_the_right_code_sets_the_cookie_and_goes_back_to_the_page(node: Node, base: str) -> None:
    reply = send_code(base, CODE, "/search?q=passport", source="127.0.0.3")
    assert reply.status == 303
    assert reply.header("Location") == "/search?q=passport"
    [cookie] = reply.all("Set-Cookie")
    name, _, rest = cookie.partition("=")
    token = rest.split(";", 1)[0]
    assert name == "access" and len(token) >= 32
    assert "river" not in cookie and "4417" not in cookie  # a token, not the code
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "secure" not in cookie.lower()  # plain HTTP: a Secure cookie would never return
    assert "expires" not in cookie.lower() and "max-age" not in cookie.lower()  # session only
    assert reply.header("Server") is None and reply.header("Cache-Control") == "no-store"
    # Spaces around the code, as a phone keyboard may add, do not matter.
    assert send_code(base, f" {CODE} ", source="127.0.0.3").status == 303


def test_the_cookie_lets_every_page_through(node: Node, base: str) -> None:
    cookie = cookie_of(send_code(base, CODE, source="127.0.0.4"))
    home = request(base, "/", Cookie=cookie)
    assert home.status == 200 and "노동자 권리 안내" in home.text
    [bundle] = [href for href, text in links(home.text) if text == "노동자 권리 안내"]
    page = request(base, bundle, Cookie=cookie)
    assert page.status == 200 and "index.md" in page.text
    [chart] = [h for h, text in links(page.text) if text == "chart.png" and "?download" in h]
    picture = request(base, chart.removesuffix("?download"), Cookie=cookie)
    assert picture.status == 200 and picture.body.startswith(b"\x89PNG")
    missing = request(base, "/nothing/here", Cookie=cookie)
    assert missing.status == 404 and CODE_PAGE not in missing.text
    # Any client may hold it: the cookie is what lets in, not the address.
    assert request(base, "/share", Cookie=cookie, source="127.0.0.5").status == 200


def test_an_article_names_its_own_files_with_passes_that_open_only_them(
    node: Node, base: str
) -> None:
    """An article is a sandboxed page: its image requests carry no cookie (SameSite), so
    its own files are named with a pass each; a pass opens that file and nothing else."""
    cookie = cookie_of(send_code(base, CODE, source="127.0.0.6"))
    home = request(base, "/", Cookie=cookie).text
    [bundle] = [h for h, text in links(home) if text == "Workers' News (sample)"]
    files = {t: h for h, t in links(request(base, bundle, Cookie=cookie).text) if "?download" in h}
    view = files["overtime.html"].removesuffix("?download").replace("/f/", "/v/")
    article = request(base, view, Cookie=cookie)
    assert article.status == 200
    [image] = re.findall(r'<img [^>]*src="([^"]+)"', article.text)
    chart = files["overtime-chart.png"].removesuffix("?download")
    assert re.fullmatch(re.escape(chart) + r"\?k=[\w-]{22}", html.unescape(image))
    passed = request(base, html.unescape(image))  # no cookie, as the sandboxed page sends it
    assert passed.status == 200 and passed.body.startswith(b"\x89PNG")
    key = html.unescape(image).split("?", 1)[1]
    for wrong in (
        chart + "?k=" + "A" * 22,  # a made-up pass
        files["overtime.html"].removesuffix("?download") + "?" + key,  # another file's
        view + "?" + key,  # a page, not a file
        bundle + "?" + key,
    ):
        assert_code_page(request(base, wrong), node, asked=wrong)


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "https://evil.example/",
        "http:/evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example/x",
        "/\tevil",
        "/a b",
        "",
    ],
)
def test_a_next_that_leaves_the_node_goes_home(base: str, target: str) -> None:
    reply = send_code(base, CODE, target, source="127.0.0.6")
    assert reply.status == 303
    assert reply.header("Location") == "/"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"--x\r\nnonsense", "multipart/form-data; boundary=x"),
        (b"code=\xff\xfe&next=/", "application/x-www-form-urlencoded; charset=utf-8"),
        (b'{"code": "river 4417"}', "application/json"),
        (b"", "application/x-www-form-urlencoded"),
    ],
    ids=["broken multipart", "not UTF-8", "not a form", "empty"],
)
def test_a_post_that_is_not_a_good_form_gets_the_code_page(
    node: Node, base: str, body: bytes, content_type: str
) -> None:
    reply = request(base, "/unlock", "POST", body, source="127.0.0.7", Content_Type=content_type)
    assert_code_page(reply, node)


def test_guessing_is_stopped_after_five_wrong_codes(node: Node, base: str) -> None:
    guesser = "127.0.0.8"
    for attempt in range(4):
        reply = send_code(base, f"guess {attempt}", source=guesser)
        assert reply.status == 403 and "not right" in reply.text
    fifth = send_code(base, "guess 5", source=guesser)
    assert_code_page(fifth, node, status=429)
    assert "Too many wrong codes. Wait a few minutes, then try again." in fifth.text
    assert 0 < int(fifth.header("Retry-After") or "0") <= LOCK_SECONDS
    # Even the right code is refused from there now, and sets no cookie.
    locked = send_code(base, CODE, source=guesser)
    assert_code_page(locked, node, status=429)
    # Another address is not held back by the guesser.
    assert send_code(base, CODE, source="127.0.0.9").status == 303


def test_the_code_page_speaks_korean_to_a_korean_browser(node: Node, base: str) -> None:
    korean = request(base, "/share", Accept_Language="ko-KR,ko;q=0.9,en;q=0.5")
    assert_code_page(korean, node)
    assert '<html lang="ko">' in korean.text and "코드를 입력하세요" in korean.text
    assert 'href="/lang/en?next=/share"' in korean.text  # the switch comes back here
    wrong = send_code(base, "틀린 코드", source="127.0.0.10", Accept_Language="ko")
    assert "코드가 맞지 않습니다" in wrong.text
    # The language link works before the code, and the page it leads to asks for it.
    switch = request(base, "/lang/ko?next=/share")
    assert switch.status == 303 and switch.header("Location") == "/share"
    chosen = request(base, "/", Accept_Language="en", Cookie="lang=ko")
    assert "코드를 입력하세요" in chosen.text
    assert send_code(base, CODE, source="127.0.0.10").status == 303  # a Korean code works too


def test_a_korean_code_matches_however_the_keyboard_composed_it(tmp_path: Path) -> None:
    composed, decomposed = (
        "비밀번호",
        "\u1107\u1175\u1106\u1175\u11af\u1107\u1165\u11ab\u1112\u1169",
    )
    with reader_server(tmp_path / "node", "--reader-code", composed) as url:
        reply = send_code(url, decomposed)
        assert reply.status == 303 and reply.all("Set-Cookie")


# Bad codes from the owner


@pytest.mark.parametrize(
    ("what", "argv", "env", "message"),
    [
        ("an empty code", ["--reader-code", ""], {}, "is empty"),
        ("blanks only", ["--reader-code", "   "], {}, "is empty"),
        ("three characters", ["--reader-code", "abc"], {}, "too short"),
        ("a code padded to four", ["--reader-code", " ab "], {}, "too short"),
        ("an empty variable", [], {"MESHDROP_READER_CODE": ""}, "is empty"),
        ("a short variable", [], {"MESHDROP_READER_CODE": "zq9"}, "too short"),
        ("a control character", ["--reader-code", "ab\x01cd"], {}, "control characters"),
        ("a code too long", ["--reader-code", "k" * 129], {}, "too long"),
    ],
)
def test_a_bad_reader_code_is_a_one_line_usage_error(
    tmp_path: Path, what: str, argv: list[str], env: dict[str, str], message: str
) -> None:
    home = tmp_path / "node"
    result = run_meshdrop("--home", home, "read", "--port", "0", *argv, env=env)
    assert result.code == 2, what
    assert result.out == ""
    [line] = result.err.splitlines()
    assert message in line and "--reader-code" in line and "Traceback" not in result.err
    assert "zq9" not in line and "abc" not in line  # the code is not echoed
    assert not home.exists()  # stopped before anything was made


def test_a_reader_code_with_no_reader_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "node"
    result = run_meshdrop(
        "--home", home, "node", "--no-reader", "--no-discovery", env={"MESHDROP_READER_CODE": CODE}
    )
    assert result.code == 2
    [line] = result.err.splitlines()
    assert "--no-reader" in line and CODE not in line
    assert not home.exists()


# In the node


def test_in_the_node_the_code_guards_the_reader_but_not_the_peer_api(
    tmp_path: Path, nodes: Nodes
) -> None:
    node = nodes.start(
        tmp_path / "home", "--no-discovery", "--no-watch", env={"MESHDROP_READER_CODE": CODE}
    )
    base = f"http://{node.address}"
    assert CODE not in repr(node.proc.args)  # given in the environment, not in `ps`
    page = request(base, "/")
    assert page.status == 403 and CODE_PAGE in page.text
    hello = request(base, "/peer/v1/hello")
    assert hello.status == 200 and CODE_PAGE.encode() not in hello.body
    assert CODE_PAGE not in request(base, "/peer/v1/nope").text
    assert request(base, "/node/status").status == 403  # its own token, not the code page
    assert CODE_PAGE not in request(base, "/node/status").text
    assert node.status()["pid"] == node.proc.pid
    reply = send_code(base, CODE, "/share")
    assert reply.status == 303 and reply.header("Location") == "/share"
    shared = request(base, "/share", Cookie=cookie_of(reply))
    assert shared.status == 200 and CODE_PAGE not in shared.text
    assert json.dumps(node.events).count(CODE) == 0


# The parts, with a clock of their own


def test_wrong_tries_lock_an_address_then_are_forgotten() -> None:
    now = [1000.0]
    limit = GuessLimit(clock=lambda: now[0], tries=5)
    for _ in range(4):
        limit.failed("10.0.0.5")
    assert limit.wait("10.0.0.5") == 0
    limit.failed("10.0.0.5")
    assert limit.wait("10.0.0.5") == LOCK_SECONDS
    now[0] += LOCK_SECONDS
    assert limit.wait("10.0.0.5") == 0  # one more try after the lock ...
    limit.failed("10.0.0.5")
    assert limit.wait("10.0.0.5") == LOCK_SECONDS  # ... and a wrong one locks again
    now[0] += FORGET_SECONDS
    assert limit.wait("10.0.0.5") == 0 and len(limit) == 0
    limit.failed("10.0.0.5")
    limit.succeeded("10.0.0.5")
    assert len(limit) == 0


def test_the_table_of_addresses_stays_bounded() -> None:
    limit = GuessLimit(clock=lambda: 5.0, tries=2, capacity=3)
    for who in ("a", "a", "b", "c", "d"):
        limit.failed(who)
    assert len(limit) == 3
    assert limit.wait("a") == 0  # the least recently failed went first
    assert limit.wait("b") == 0 and limit.wait("d") == 0


@pytest.mark.parametrize(
    ("remote", "key"),
    [
        ("192.168.1.20", "192.168.1.20"),
        ("fe80::1:2:3:4", "fe80::/64"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:10.0.0.7", "10.0.0.7"),
        (None, "?"),
        ("not an address", "?"),
    ],
)
def test_tries_count_per_address_and_per_ipv6_64(remote: str | None, key: str) -> None:
    assert address_key(remote) == key


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        ("/", True),
        ("/b/abcdefghijklmnop/?page=2", True),
        ("/search?q=%EC%97%AC%EA%B6%8C", True),
        ("//evil", False),
        ("/\\evil", False),
        ("https://evil/", False),
        ("relative", False),
        ("/여권", False),  # browsers send paths percent-encoded; the form holds those
        ("/" + "a" * 3000, False),
        (None, False),
    ],
)
def test_only_local_paths_are_kept_as_the_place_to_return_to(
    target: str | None, kept: bool
) -> None:
    assert local_target(target) == (target if kept else "/")
