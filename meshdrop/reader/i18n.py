"""The reader's interface strings in English and Korean, and choosing between them.

The choice comes from the ``lang`` cookie if the reader set one (the language links),
else from the browser's Accept-Language, else English. Publisher content is shown as
published, in whatever language it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

LANGUAGES = ("en", "ko")
DEFAULT = "en"
COOKIE = "lang"

STRINGS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "site": "Library",  # the owner may choose another (--name)
        "language_name": "English",
        "switch_to": "한국어",
        "home": "Home",
        "search": "Search",
        "search_label": "Search titles, descriptions and articles",
        "search_button": "Search",
        "search_placeholder": "Search articles",
        "file_count": "{count} files",
        "file_count_one": "1 file",
        "results_for": "Results for “{query}”",
        "no_results": "Nothing found. Try a shorter word or another spelling.",
        "empty_query": "Type a word to search for.",
        "verified": "verified",
        "verified_legend": (
            "✓ verified: signed by a publisher this node trusts, every byte checked."
        ),
        "publisher": "Publisher",
        "fingerprint": "Fingerprint",
        "signed": "Signed",
        "signed_on": "Signed {date}",
        "expires_on": "Until {date}",
        "size": "Size",
        "files": "Files",
        "articles": "Read here",
        "no_articles": "Nothing here can be shown in the browser; see the downloads below.",
        "downloads": "Downloads",
        "downloads_note": (
            "Saves the file on this phone, where it stays until you delete it. "
            "Reading above leaves no file behind."
        ),
        "text_larger": "A+",
        "text_larger_label": "Larger text",
        "text_normal": "A-",
        "text_normal_label": "Normal text size",
        "newest_signed": "Newest content signed on {date}",
        "nothing_signed": "No content from this publisher yet",
        "stale": "Nothing newer for {days} days: this node may be cut off.",
        "no_bundles": "This node holds no content yet.",
        "older": "Older →",
        "newer": "← Newer",
        "start_reading": "Start reading",
        "open": "Open",
        "download": "Download",
        "back_to_bundle": "← All files of this bundle",
        "no_preview": "This file cannot be shown here; download it to open it.",
        "too_big_to_show": "This file is too big to show here; download it instead.",
        "audio_fallback": "Your browser cannot play this audio; download it instead.",
        "video_fallback": "Your browser cannot play this video; download it instead.",
        "share": "Share this node",
        "share_intro": (
            "People on the same Wi-Fi can open this address in their browser, or scan the "
            "code with their phone camera. Nothing here needs the internet."
        ),
        "share_none": "This node's network address is not known; ask its owner.",
        "share_fingerprint": (
            "The browser will warn that this connection is not private: this node made its "
            "own certificate. Check once that the browser shows this fingerprint (SHA-256); "
            "the code above carries it too."
        ),
        "address": "Address",
        "not_found_title": "Not found",
        "not_found": "There is nothing at this address on this node.",
        "busy_title": "Busy",
        "busy": "This node is busy. Wait a moment and try again.",
        "error_title": "Something went wrong",
        "error": "This node could not show this page. Try again later.",
        "damaged": "Part of this file is damaged on this node and cannot be shown.",
        "code_title": "Enter the code",
        "code_intro": "Reading here needs a code. Ask the person who runs this node.",
        "code_label": "Code",
        "code_button": "Continue",
        "code_wrong": "That code is not right. Try again.",
        "code_wait": "Too many wrong codes. Wait a few minutes, then try again.",
        "traces": (
            "This reader keeps no record of what you read. Your browser may: "
            "use a private tab, and clear its history when you are done."
        ),
        "kinds_html": "article",
        "kinds_markdown": "article",
        "kinds_text": "text",
        "kinds_image": "image",
        "kinds_audio": "audio",
        "kinds_video": "video",
        "kinds_other": "file",
        "lang_ko": "Korean",
        "lang_en": "English",
        "lang_mul": "Several languages",
        "lang_und": "Other",
    },
    "ko": {
        "site": "도서관",
        "language_name": "한국어",
        "switch_to": "English",
        "home": "처음으로",
        "search": "검색",
        "search_label": "제목, 설명, 기사 내용 검색",
        "search_button": "검색",
        "search_placeholder": "기사 검색",
        "file_count": "파일 {count}개",
        "file_count_one": "파일 1개",
        "results_for": "“{query}” 검색 결과",
        "no_results": "찾은 것이 없습니다. 더 짧은 단어나 다른 표기로 찾아보세요.",
        "empty_query": "찾을 단어를 입력하세요.",
        "verified": "확인됨",
        "verified_legend": (
            "✓ 확인됨: 이 노드가 신뢰하는 발행자가 서명했고, 모든 데이터를 검사했습니다."
        ),
        "publisher": "발행자",
        "fingerprint": "지문",
        "signed": "서명",
        "signed_on": "{date} 서명",
        "expires_on": "{date}까지",
        "size": "크기",
        "files": "파일",
        "articles": "여기서 읽기",
        "no_articles": "브라우저에서 보여 줄 수 있는 것이 없습니다. 아래에서 내려받으세요.",
        "downloads": "내려받기",
        "downloads_note": (
            "파일을 이 휴대폰에 저장합니다. 지우기 전까지 남아 있습니다. "
            "위에서 읽으면 파일이 남지 않습니다."
        ),
        "text_larger": "가+",
        "text_larger_label": "글자 크게",
        "text_normal": "가-",
        "text_normal_label": "글자 보통 크기로",
        "newest_signed": "가장 최근 콘텐츠 서명일: {date}",
        "nothing_signed": "이 발행자의 콘텐츠가 아직 없습니다",
        "stale": "{days}일 동안 새 콘텐츠가 없습니다. 이 노드가 끊겨 있을 수 있습니다.",
        "no_bundles": "이 노드에는 아직 콘텐츠가 없습니다.",
        "older": "이전 →",
        "newer": "← 최신",
        "start_reading": "읽기 시작",
        "open": "열기",
        "download": "내려받기",
        "back_to_bundle": "← 이 묶음의 모든 파일",
        "no_preview": "이 파일은 여기서 보여 줄 수 없습니다. 내려받아 여세요.",
        "too_big_to_show": "이 파일은 너무 커서 여기서 보여 줄 수 없습니다. 내려받으세요.",
        "audio_fallback": "이 브라우저는 이 오디오를 재생할 수 없습니다. 내려받으세요.",
        "video_fallback": "이 브라우저는 이 동영상을 재생할 수 없습니다. 내려받으세요.",
        "share": "이 노드 공유하기",
        "share_intro": (
            "같은 와이파이에 있는 사람은 브라우저에서 이 주소를 열거나, 휴대폰 카메라로 "
            "코드를 찍으면 됩니다. 인터넷은 필요 없습니다."
        ),
        "share_none": "이 노드의 네트워크 주소를 알 수 없습니다. 노드 주인에게 물어보세요.",
        "share_fingerprint": (
            "브라우저가 이 연결은 비공개가 아니라고 경고합니다. 이 노드가 스스로 만든 인증서이기 "
            "때문입니다. 브라우저에 보이는 지문(SHA-256)이 이것과 같은지 한 번 확인하세요. 위의 "
            "코드에도 들어 있습니다."
        ),
        "address": "주소",
        "not_found_title": "찾을 수 없음",
        "not_found": "이 노드의 이 주소에는 아무것도 없습니다.",
        "busy_title": "바쁨",
        "busy": "이 노드가 지금 바쁩니다. 잠시 후 다시 시도하세요.",
        "error_title": "문제가 생겼습니다",
        "error": "이 노드가 이 페이지를 보여 줄 수 없습니다. 나중에 다시 시도하세요.",
        "damaged": "이 파일의 일부가 이 노드에서 손상되어 보여 줄 수 없습니다.",
        "code_title": "코드를 입력하세요",
        "code_intro": "여기서 읽으려면 코드가 필요합니다. 이 노드를 운영하는 사람에게 물어보세요.",
        "code_label": "코드",
        "code_button": "계속",
        "code_wrong": "코드가 맞지 않습니다. 다시 입력하세요.",
        "code_wait": "틀린 코드를 너무 많이 입력했습니다. 몇 분 기다린 뒤 다시 시도하세요.",
        "traces": (
            "이 리더는 무엇을 읽었는지 기록하지 않습니다. 브라우저는 기록할 수 있으니 "
            "비공개 탭을 쓰고, 다 읽은 뒤 방문 기록을 지우세요."
        ),
        "kinds_html": "기사",
        "kinds_markdown": "기사",
        "kinds_text": "텍스트",
        "kinds_image": "이미지",
        "kinds_audio": "오디오",
        "kinds_video": "동영상",
        "kinds_other": "파일",
        "lang_ko": "한국어",
        "lang_en": "영어",
        "lang_mul": "여러 언어",
        "lang_und": "기타",
    },
}


def choose(cookie: str | None, accept_language: str | None) -> str:
    """The interface language: the cookie's if valid, else the browser's best match."""
    if cookie in LANGUAGES:
        return cookie
    return from_accept_language(accept_language or "")


def from_accept_language(header: str) -> str:
    """The supported language the browser prefers most (RFC 9110 weights; ties keep the
    header's order), or English."""
    best, best_q = DEFAULT, 0.0
    for item in header.split(",")[:32]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().split("-")[0].lower()
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def language_label(code: str, lang: str) -> str:
    """A bundle's language code for people ("ko" -> "Korean"), falling back to the code."""
    primary = code.split("-")[0].lower()
    return STRINGS[lang].get(f"lang_{primary}", code)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_date(ts: int | None, lang: str) -> str:
    """A signing time as readers say dates ("3 Dec 2026", "2026년 12월 3일"), in UTC."""
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(min(max(ts, 0), 253_402_300_799), UTC)
    if lang == "ko":
        return f"{moment.year}년 {moment.month}월 {moment.day}일"
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"  # not the C locale's


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")
