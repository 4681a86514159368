"""What the reader tests share: a node holding real bundles (the sample bundles, Korean
content, a hostile page, a big file, a withdrawn bundle), the installed `meshdrop read`
running on 127.0.0.1 with port 0, plain HTTP requests, and a small DevTools-protocol
client for headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import html
import http.client
import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from trustkit import YEAR, Chain, Delegation, bundle_bytes, publisher_file, signed, write

from conftest import Publisher, Result, command_env, meshdrop_executable, run_meshdrop, write_tree
from meshdrop.core.records import Reason
from meshdrop.publish.keystore import load_publisher
from meshdrop.publish.pack import pack_folder
from meshdrop.reader import readerids

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "bundles"
MIB = 1024 * 1024
BIG_SIZE = 2 * MIB + 123_457  # three chunks, the last one partial
ID = "[a-z2-7]{16}"  # an opaque id in reader URLs


def pack_in_process(
    publisher: Publisher,
    src: Path,
    out: Path,
    name: str,
    *,
    title: str,
    description: str = "",
    language: str = "en",
    created: int | None = None,
    expires: int | None = None,
) -> Path:
    """Pack with the library the `pack` command uses (fast for many bundles)."""
    created = created or int(time.time())
    folder = load_publisher(publisher.folder)
    key, _signer = folder.load_signer(lambda _what: None, created, bundle_name=name)
    pack_folder(
        src,
        out,
        signing_key=key,
        state=folder.state,
        name=name,
        version=created,
        created=created,
        expires=expires,
        title=title,
        description=description,
        language=language,
        priority=0,
    )
    return out


def pack_samples(publisher: Publisher, out: Path, created: int) -> list[tuple[Path, str]]:
    """The sample bundles of bundles/demo.tsv packed into ``out`` as ``<name>.mdrop``:
    (bundle file, title) each, in the table's order."""
    packed = []
    for line in (SAMPLES / "demo.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        src, name, title, description, language, _priority = line.split("\t")
        bundle = pack_in_process(
            publisher,
            SAMPLES / src,
            out / f"{name}.mdrop",
            name,
            title=title,
            description=description,
            language=language,
            created=created,
        )
        packed.append((bundle, title))
    return packed


def big_bytes() -> bytes:
    return random.Random(6).randbytes(BIG_SIZE)


KOREAN_MARKDOWN = """# 여권은 당신의 것입니다

고용주는 **여권**이나 외국인등록증을 대신 보관할 수 없습니다.

- 임금명세서를 매달 받으세요.
- 초과근무 시간을 수첩에 적으세요.

<script>alert("never runs")</script>

[다음 글](next.md) · [밖으로 나가는 링크](http://127.0.0.2/outside) ·
[스크립트 링크](javascript:alert(1))

![도표](chart.png)
"""

HOSTILE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="1;url={trap}/refresh">
<link rel="stylesheet" href="{trap}/style.css">
<style>body {{ font-family: sans-serif }}</style>
</head><body>
<a href="{trap}/clicked" style="display:block;height:150px;background:#fdd">Go elsewhere</a>
<a href="{trap}/clicked-top" target="_top" style="display:block;height:150px;background:#dfd">
Take over the page</a>
<h1>A page a thief of a signing key might write</h1>
<img src="{trap}/pixel.png" alt="">
<img src="chart.png" alt="a local image">
<script>fetch("{trap}/script"); top.location = "{trap}/top";</script>
<form action="{trap}/form" method="post"><input name="a" value="b"><button>Send</button></form>
<iframe src="{trap}/frame"></iframe>
<p>hostile page</p>
</body></html>
"""

PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005fe02fea7d6a4aa0000000049454e44ae426082"
)


@dataclass
class Node:
    home: Path
    fingerprint: str  # the main publisher's
    leaky_fingerprint: str  # the publisher whose leaked key signed "leaked"
    trap: str  # http://127.0.0.2:PORT: "another host" that publisher content must not reach
    names: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)  # bundle name -> its title
    found: dict[tuple[str, str], str] = field(default_factory=dict)

    def url(self, base: str, name: str, rest: str = "") -> str:
        """A reader URL found the way a person finds it, by following links: the bundle
        ``name`` by its title on the home page; with ``rest`` ("v/PATH", "f/PATH",
        "f/PATH?download") the file by its name in the bundle page's downloads."""
        if (base, name) not in self.found:
            wanted = self.titles.get(name) or name
            found = [h for h, text in links(fetch(base, "/").text) if text == wanted]
            [self.found[(base, name)]] = {h for h in found if re.fullmatch(f"/b/{ID}/", h)}
        bundle = self.found[(base, name)]
        if not rest:
            return bundle
        kind, _, path = rest.partition("/")
        path, mark, query = path.partition("?")
        downloads = {
            text: href
            for href, text in links(fetch(base, bundle).text)
            if re.fullmatch(f"/b/{ID}/f/{ID}\\?download", href)
        }
        raw = downloads[path].removesuffix("?download")
        return (raw if kind == "f" else raw.replace("/f/", "/v/")) + mark + query

    def made_up_url(self, name: str, fingerprint: str | None = None, path: str = "") -> str:
        """The URL this node would give the bundle (or file) ``name`` if it showed it:
        computed with the node's reader key, for bundles no page links to."""
        key = (self.home / readerids.KEY_FILE).read_bytes()
        publisher = fingerprint or self.fingerprint
        url = f"/b/{readerids.bundle_id(key, publisher, name)}/"
        return url + f"f/{readerids.file_id(key, publisher, name, path)}" if path else url


def links(page: str) -> list[tuple[str, str]]:
    """(href, first piece of text) of every link in a page."""
    found = []
    for href, inner in re.findall(r'<a\b[^>]*?\shref="([^"]*)"[^>]*>(.*?)</a>', page, re.S):
        pieces = [p.strip() for p in re.split(r"<[^>]*>", inner) if p.strip()]
        found.append((html.unescape(href), html.unescape(pieces[0]) if pieces else ""))
    return found


def build_node(
    folder: Path, trap: str = "http://127.0.0.2:9", run: Callable[..., Result] = run_meshdrop
) -> Node:
    """A node with real bundles through the installed command and the packing library.
    Its commands run as real processes, or with ``run=meshdrop_in_process`` in process
    (only on the main thread: test_reader_browser builds the node on a worker thread,
    beside its event loop)."""
    now = int(time.time())
    publisher = Publisher(folder / "publisher")
    run(
        "publisher", "new", publisher.folder, "--name", "Workers' News", "--unencrypted", check=True
    )
    home = folder / "node"
    run("--home", home, "trust", "add", "--yes", publisher.pub, check=True)
    out = folder / "bundles"
    out.mkdir()
    titles = {"rights-ko": "노동자 권리 안내", "tricky": "Tricky <b>content</b> & edge cases"}
    titles.update({path.stem: title for path, title in pack_samples(publisher, out, now - 3)})
    korean = write_tree(
        folder / "src-ko",
        {
            "index.md": KOREAN_MARKDOWN.encode(),
            "next.md": "# 다음 글\n\n임금 체불 신고하는 법.\n".encode(),
            "chart.png": PNG_1X1,
            "안내문.txt": "휴일 근무 수당 안내\n이 파일은 내려받을 수 있습니다.\n".encode(),
        },
    )
    pack_in_process(
        publisher,
        korean,
        out / "rights-ko.mdrop",
        "rights-ko",
        title=titles["rights-ko"],
        description="여권, 임금명세서, 초과근무에 대해 알아야 할 것",
        language="ko",
        created=now - 2,
    )
    tricky = write_tree(
        folder / "src-tricky",
        {
            "hostile.html": HOSTILE_HTML.format(trap=trap).encode(),
            "chart.png": PNG_1X1,
            "report.pdf": b"%PDF-1.4\n% not really a PDF\n",
            "notes.txt": b"<script>alert(1)</script> plain text, shown as text\n",
            "big.bin": big_bytes(),
            "empty.txt": b"",
        },
    )
    pack_in_process(
        publisher,
        tricky,
        out / "tricky.mdrop",
        "tricky",
        title=titles["tricky"],
        description="A hostile page, a download, a big file",
        created=now - 1,
    )
    leaky = _leaky_publisher(folder / "leaky", now)
    run("--home", home, "trust", "add", "--yes", leaky["pub"], check=True)
    run("--home", home, "import", out, leaky["honest"], leaky["leaked"], check=True)
    # The publisher reports the leaked key compromised: what it signed is withdrawn.
    run("--home", home, "import", leaky["revocation"], check=True)
    states = {
        b["name"]: b["state"]
        for b in map(
            json.loads,
            run("--home", home, "ls", "--all", "--json", check=True).out.splitlines(),
        )
    }
    assert states["leaked"] == "withdrawn", states
    fingerprints = {
        p["name"]: p["fingerprint"]
        for p in map(
            json.loads,
            run("--home", home, "trust", "ls", "--json", check=True).out.splitlines(),
        )
    }
    return Node(
        home,
        fingerprints["Workers' News"],
        fingerprints["Leaky Press"],
        trap,
        sorted(states),
        {**titles, "honest": "honest v1"},  # trustkit's bundle_bytes titles it so
    )


def _leaky_publisher(folder: Path, now: int) -> dict[str, Path]:
    folder.mkdir()
    chain = Chain(["reader-r1"], 1, name="Leaky Press")

    def delegation(name: str) -> Delegation:
        return Delegation(name, not_before=now - YEAR, expires=now + YEAR)

    r1 = signed(chain.record(1, signers=(delegation("reader-s1"),), created=now - 5), ["reader-r1"])
    r2 = signed(
        chain.record(
            2, signers=(delegation("reader-s1"), delegation("reader-s2")), created=now - 4
        ),
        ["reader-r1"],
    )
    r3 = signed(
        chain.record(
            3,
            signers=(delegation("reader-s1"),),
            revoked=(("reader-s2", Reason.COMPROMISED, now - 3),),
            created=now - 3,
        ),
        ["reader-r1"],
    )
    honest = bundle_bytes(
        [r1, r2], chain.id, "reader-s1", name="honest", created=now - 2, data=b"<p>honest</p>"
    )
    leaked = bundle_bytes(
        [r1, r2],
        chain.id,
        "reader-s2",
        name="leaked",
        created=now - 2,
        data=b"<p>zebracrossing: signed with a stolen key</p>",
    )
    return {
        "pub": write(folder / "leaky.pub", publisher_file([r1])),
        "honest": write(folder / "honest.mdrop", honest),
        "leaked": write(folder / "leaked.mdrop", leaked),
        "revocation": write(folder / "leaky-3.pub", publisher_file([r1, r2, r3])),
    }


@contextlib.contextmanager
def reader_server(
    home: Path, *extra: str, bind: str = "127.0.0.1", env: dict[str, str] | None = None
) -> Iterator[str]:
    """`meshdrop --home HOME read --bind BIND --port 0 EXTRA...` running (with ``env``
    added to its environment); yields its base URL (ends in /)."""
    env = command_env(env)
    proc = subprocess.Popen(
        [meshdrop_executable(), "--home", str(home), "read", "--bind", bind, "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    found = re.search(rf"http://{re.escape(bind)}:\d+/", line)
    if found is None:
        proc.kill()
        raise AssertionError(f"meshdrop read did not start: {line!r} {proc.stderr.read()!r}")
    try:
        yield found.group(0)
    finally:
        stop_reader(proc)


def stop_reader(proc: subprocess.Popen[str]) -> None:
    """SIGTERM a `meshdrop read` started with stderr piped: it must stop cleanly (exit 0,
    no traceback) within 15 s."""
    assert proc.stderr is not None
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    errors = proc.stderr.read()
    assert code == 0, errors
    assert "Traceback" not in errors, errors


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(found) <= 1, f"{name} sent {len(found)} times"
        return found[0] if found else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def fetch(
    base: str, path: str, method: str = "GET", body: bytes | None = None, **headers: str
) -> Reply:
    """One plain HTTP/1.1 request (no compression unless asked), as raw as it comes."""
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    try:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def search(base: str, query: str, **headers: str) -> Reply:
    """The search form as a browser sends it: a POST of the field ``q``."""
    body = urlencode({"q": query}).encode()
    kind = "application/x-www-form-urlencoded"
    return fetch(base, "/search", "POST", body, Content_Type=kind, **headers)


def results(reply: Reply) -> list[str]:
    found = re.search(r'<ul class="list results">(.*?)</ul>', reply.text, re.S)
    return [href for href, _text in links(found.group(1))] if found else []


def search_until_indexed(base: str, query: str) -> Reply:
    """Search runs on an index its own process builds after the reader starts: wait
    (bounded) until a query that must find something does, on a whole index (the page
    says while the index is catching up: results found then may be a part)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        reply = search(base, query)
        if results(reply) and not still_indexing(reply):
            return reply
        time.sleep(0.2)
    return reply


def still_indexing(reply: Reply) -> bool:
    return '<p class="indexing">' in reply.text


class DevTools:
    """Just enough of the Chrome DevTools protocol over aiohttp's websocket client: send
    a command and await its answer, collect events, follow every frame's target."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.listeners: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            self.events.append(data)
            for method, future in list(self.listeners):
                if data.get("method") == method and not future.done():
                    future.set_result(data)
            if data.get("method") == "Target.attachedToTarget":
                asyncio.get_running_loop().create_task(self._follow(data["params"]))

    async def _follow(self, params: dict[str, Any]) -> None:
        """A frame in a process of its own (a sandboxed iframe may be): watch it too."""
        session = params["sessionId"]
        await self.send("Network.enable", session=session)
        await self.send("Log.enable", session=session)
        await self.send(
            "Target.setAutoAttach",
            {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True},
            session=session,
        )
        await self.send("Runtime.runIfWaitingForDebugger", session=session)

    async def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = future
        await self.ws.send_str(json.dumps(message))
        answer = await asyncio.wait_for(future, 30)
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    def expect(self, method: str) -> asyncio.Future[dict[str, Any]]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.listeners.append((method, future))
        return future

    async def evaluate(self, expression: str, session: str | None = None) -> Any:
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            session=session,
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def of(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
