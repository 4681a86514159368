"""The reader's interface strings in English and Korean (i18n.py chooses between them),
and the Korean words for the kinds of file a report cannot carry (imageclean.py names
them in English)."""

from __future__ import annotations

from collections.abc import Mapping

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
        "still_indexing": "New articles are still being added to search: try again soon.",
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
        "write_link": "Write to {name}",
        "write_others": "Write to a publisher",
        "write_heading": "Write to {name}",
        "write_intro": (
            "Tell {name} what is happening to you: unpaid wages, a passport taken, money "
            "demanded. Only {name} can open what you send. Your name is not needed."
        ),
        "protect_https": (
            "Protected: this connection is encrypted (HTTPS), so what you type crosses the "
            "Wi-Fi encrypted. This node seals it at once so that only the recipient can open it."
        ),
        "protect_local": (
            "Protected: you are writing on the node's own machine, so what you type does not "
            "cross any network. This node seals it at once so that only the recipient can open it."
        ),
        "protect_hotspot": (
            "The owner of this node runs this Wi-Fi: what you type crosses it unencrypted to "
            "the node, which then seals it so that only the recipient can open it. Anyone the "
            "owner lets onto this Wi-Fi could see it on the way."
        ),
        "protect_none": (
            "Writing is turned off on this connection: it is not encrypted, so others on the "
            "Wi-Fi could read what you type. Ask the person who runs this node to turn on "
            "HTTPS, then open this page again."
        ),
        "write_text_label": "Your report",
        "write_text_cap": (
            "Up to {kib} KiB of text (about 21,000 Korean or 65,000 English letters)."
        ),
        "write_files_label": "Photos or text files (optional)",
        "write_files_cap": (
            "Up to {files} photos (JPEG, PNG, WebP, GIF) or plain text files, {mib} MiB "
            "together. Other kinds (PDF, video, office files) cannot be cleaned and are refused."
        ),
        "write_photos": (
            "Before sending, this node removes what a photo hides: place (GPS), time, phone "
            "and camera. A photo can still identify a camera or a place by what it shows."
        ),
        "write_send": "Seal and send",
        "protect_browser": (
            "Protected: this browser seals what you write and your photos before anything is "
            "sent, so only the recipient can open it; the node and others on the Wi-Fi see only "
            "a sealed parcel. On a Wi-Fi you do not trust, someone in control of it could "
            "still change this page itself: HTTPS or the node's own hotspot protect better."
        ),
        "protect_script_needed": (
            "This connection is not encrypted: writing works here only with JavaScript turned "
            "on, so that this browser seals your report before it is sent."
        ),
        "seal_pictures": "Cleaning the photos (place, time and camera are removed)...",
        "seal_sealing": "Sealing in this browser...",
        "seal_stamping": "Stamping the sealed report, tries:",
        "seal_sending": "Sending the sealed report...",
        "seal_failed": "Sealing or sending failed: nothing was sent. Try again.",
        "seal_kind": "Only photos (JPEG, PNG, WebP, GIF) can be sent from this page.",
        "drop_refused_title": "Not sent",
        "drop_refused": (
            "The sealed report arrived damaged or not as this page makes it, and was not kept. "
            "Open the page again and send it again."
        ),
        "write_wait_title": "Please wait",
        "write_wait": (
            "Too many reports from this device in a short time. Wait ten minutes, then send again."
        ),
        "report_empty": "Write something or choose a photo first.",
        "report_refused": "This page could not take what was sent. Open the form again.",
        "report_not_a_form": (
            "This page could not read what was sent; open the form again and send it from there."
        ),
        "report_too_big": "The report is too big: at most 9 MiB in all.",
        "report_text_too_long": (
            "The text is too long: at most 64 KiB (about 21,000 Korean or 65,000 English letters)."
        ),
        "report_too_many_files": "Too many photos or files: at most 8.",
        "report_files_too_big": "The photos are too big together: at most 8 MiB.",
        "report_unknown_field": (
            "The form held a field this page does not know; open the form again and send it."
        ),
        "report_nameless_part": (
            "The form held a part without a name; open the form again and send it from there."
        ),
        "report_repeated_text": (
            "The form held the text twice; open the form again and send it once."
        ),
        "report_unexpected_part": (
            "The form held a part sent in a way this page does not read; open the form again."
        ),
        "report_text_unreadable": (
            "The text could not be read (it was not sent as UTF-8); open the form again."
        ),
        "report_incomplete": (
            "The report arrived incomplete; check the connection and send it again."
        ),
        "attach_uncleanable": (
            "Nothing was sent: “{name}” is {kind}, which cannot be cleaned of what identifies "
            "it. Remove it and send again, or attach a photo or plain text instead."
        ),
        "attach_empty": "Nothing was sent: “{name}” is empty. Remove it and send again.",
        "attach_too_large": (
            "Nothing was sent: the picture “{name}” has too many pixels to clean here. "
            "Send a smaller photo."
        ),
        "attach_damaged": (
            "Nothing was sent: the picture “{name}” could not be read (cut short or broken)."
        ),
        "receipt_sent_title": "Sealed",
        "receipt_sent": (
            "Your report is sealed on this node: only its recipient can open it. It travels "
            "from node to node until it reaches them."
        ),
        "receipt_code_label": "Receipt code",
        "receipt_keep": (
            "Remember this code or write it somewhere safe. Enter it here later to see whether "
            "the report was delivered. The code tells nobody what you wrote."
        ),
        "receipt_check_link": "Check a receipt code",
        "receipt_check_title": "Check a receipt code",
        "receipt_check_intro": "Enter the code you were shown when you sent a report.",
        "receipt_check_button": "Check",
        "receipt_state_waiting": "Waiting: the report is sealed and on its way; not delivered yet.",
        "receipt_state_delivered": "Delivered: the recipient has received and opened the report.",
        "receipt_state_unknown": (
            "This node does not know that code. It may have been sent from another node, or "
            "mistyped."
        ),
        "receipt_state_bad": "A receipt code is 8 letters and digits, like ABCD2345.",
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
        "still_indexing": "새 글을 아직 검색에 추가하는 중입니다. 잠시 후 다시 찾아보세요.",
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
        "write_link": "{name}에 글 보내기",
        "write_others": "발행자에게 글 보내기",
        "write_heading": "{name}에 글 보내기",
        "write_intro": (
            "겪고 있는 일을 {name}에 알리세요. 임금 체불, 빼앗긴 여권, 돈 요구 같은 일입니다. "
            "보낸 글은 {name}만 열어 볼 수 있습니다. 이름은 쓰지 않아도 됩니다."
        ),
        "protect_https": (
            "보호됨: 이 연결은 암호화되어(HTTPS) 입력한 내용이 암호화된 채로 와이파이를 "
            "지나갑니다. 이 노드가 바로 봉인해서 받는 곳만 열어 볼 수 있습니다."
        ),
        "protect_local": (
            "보호됨: 노드가 돌아가는 기기에서 직접 쓰고 있어서 입력한 내용이 어떤 네트워크도 "
            "지나가지 않습니다. 이 노드가 바로 봉인해서 받는 곳만 열어 볼 수 있습니다."
        ),
        "protect_hotspot": (
            "이 와이파이는 이 노드의 주인이 운영합니다. 입력한 내용은 암호화되지 않은 채로 "
            "와이파이를 지나 노드에 도착하고, 노드가 봉인해서 받는 곳만 열어 볼 수 있게 합니다. "
            "주인이 이 와이파이에 들여보낸 사람은 가는 도중에 볼 수 있습니다."
        ),
        "protect_none": (
            "이 연결에서는 글쓰기가 꺼져 있습니다. 연결이 암호화되지 않아 같은 와이파이의 다른 "
            "사람이 입력한 내용을 볼 수 있기 때문입니다. 노드를 운영하는 사람에게 HTTPS를 "
            "켜 달라고 한 뒤 이 페이지를 다시 여세요."
        ),
        "write_text_label": "보낼 내용",
        "write_text_cap": "글은 {kib}KiB까지 (한글 약 21,000자, 영문 약 65,000자).",
        "write_files_label": "사진이나 텍스트 파일 (선택)",
        "write_files_cap": (
            "사진(JPEG, PNG, WebP, GIF)이나 일반 텍스트 파일 {files}개까지, 모두 합쳐 {mib}MiB"
            "까지. 다른 종류(PDF, 동영상, 문서 파일)는 정리할 수 없어 받지 않습니다."
        ),
        "write_photos": (
            "보내기 전에 이 노드가 사진에 숨은 정보를 지웁니다: 위치(GPS), 시간, 휴대폰과 "
            "카메라 정보. 그래도 사진에 찍힌 것으로 카메라나 장소를 알아볼 수 있습니다."
        ),
        "write_send": "봉인해서 보내기",
        "protect_browser": (
            "보호됨: 보내기 전에 이 브라우저가 글과 사진을 봉인하므로 받는 곳만 열어 볼 수 "
            "있습니다. 노드와 같은 와이파이의 다른 사람은 봉인된 꾸러미만 봅니다. 믿을 수 없는 "
            "와이파이에서는 그 와이파이를 장악한 사람이 이 페이지 자체를 바꿀 수 있습니다. "
            "HTTPS나 노드의 핫스팟이 더 안전합니다."
        ),
        "protect_script_needed": (
            "이 연결은 암호화되지 않았습니다. 여기서는 자바스크립트를 켜야만 글을 쓸 수 "
            "있습니다. 그래야 보내기 전에 이 브라우저가 봉인합니다."
        ),
        "seal_pictures": "사진 정리 중(위치, 시간, 카메라 정보를 지웁니다)...",
        "seal_sealing": "이 브라우저에서 봉인하는 중...",
        "seal_stamping": "봉인한 글에 도장 찍는 중, 시도 횟수:",
        "seal_sending": "봉인한 글을 보내는 중...",
        "seal_failed": "봉인하거나 보내지 못했습니다. 아무것도 보내지 않았습니다. 다시 해 보세요.",
        "seal_kind": "이 페이지에서는 사진(JPEG, PNG, WebP, GIF)만 보낼 수 있습니다.",
        "drop_refused_title": "보내지 못함",
        "drop_refused": (
            "봉인한 글이 손상되었거나 이 페이지가 만드는 형태가 아니어서 보관하지 않았습니다. "
            "페이지를 다시 열고 다시 보내세요."
        ),
        "write_wait_title": "잠시 기다리세요",
        "write_wait": "이 기기에서 짧은 시간에 너무 많이 보냈습니다. 10분 뒤에 다시 보내세요.",
        "report_empty": "먼저 내용을 쓰거나 사진을 고르세요.",
        "report_refused": "보낸 것을 받을 수 없습니다. 양식을 다시 여세요.",
        "report_not_a_form": "보낸 것을 읽을 수 없습니다. 양식을 다시 열고 거기서 보내세요.",
        "report_too_big": "너무 큽니다. 모두 합쳐 9MiB까지입니다.",
        "report_text_too_long": "글이 너무 깁니다. 64KiB까지입니다 (한글 약 21,000자).",
        "report_too_many_files": "사진이나 파일이 너무 많습니다. 8개까지입니다.",
        "report_files_too_big": "사진이 모두 합쳐 너무 큽니다. 8MiB까지입니다.",
        "report_unknown_field": "양식에 모르는 항목이 있습니다. 양식을 다시 열고 보내세요.",
        "report_nameless_part": "양식에 이름 없는 부분이 있습니다. 양식을 다시 열고 보내세요.",
        "report_repeated_text": (
            "양식에 글이 두 번 들어 있습니다. 양식을 다시 열고 한 번만 보내세요."
        ),
        "report_unexpected_part": "양식의 한 부분을 읽을 수 없습니다. 양식을 다시 여세요.",
        "report_text_unreadable": "글을 읽을 수 없습니다 (UTF-8이 아님). 양식을 다시 여세요.",
        "report_incomplete": "내용이 다 도착하지 않았습니다. 연결을 확인하고 다시 보내세요.",
        "attach_uncleanable": (
            "보내지 않았습니다: “{name}”은(는) {kind}이며, 신원을 드러내는 정보를 지울 수 "
            "없습니다. 빼고 다시 보내거나 사진이나 일반 텍스트를 붙이세요."
        ),
        "attach_empty": "보내지 않았습니다: “{name}”은(는) 빈 파일입니다. 빼고 다시 보내세요.",
        "attach_too_large": (
            "보내지 않았습니다: 사진 “{name}”은(는) 화소가 너무 많아 여기서 정리할 수 없습니다. "
            "더 작은 사진을 보내세요."
        ),
        "attach_damaged": (
            "보내지 않았습니다: 사진 “{name}”을(를) 읽을 수 없습니다 (잘렸거나 손상됨)."
        ),
        "receipt_sent_title": "봉인됨",
        "receipt_sent": (
            "보낸 내용은 이 노드에서 봉인되었습니다. 받는 곳만 열어 볼 수 있습니다. 받는 곳에 "
            "닿을 때까지 노드에서 노드로 옮겨집니다."
        ),
        "receipt_code_label": "접수 번호",
        "receipt_keep": (
            "이 번호를 기억하거나 안전한 곳에 적어 두세요. 나중에 여기서 입력하면 전달되었는지 "
            "볼 수 있습니다. 이 번호로는 무엇을 썼는지 아무도 알 수 없습니다."
        ),
        "receipt_check_link": "접수 번호 확인",
        "receipt_check_title": "접수 번호 확인",
        "receipt_check_intro": "보낼 때 받은 번호를 입력하세요.",
        "receipt_check_button": "확인",
        "receipt_state_waiting": "기다리는 중: 봉인되어 가는 중이며 아직 전달되지 않았습니다.",
        "receipt_state_delivered": "전달됨: 받는 곳이 받아서 열어 보았습니다.",
        "receipt_state_unknown": (
            "이 노드는 그 번호를 모릅니다. 다른 노드에서 보냈거나 잘못 입력했을 수 있습니다."
        ),
        "receipt_state_bad": "접수 번호는 ABCD2345처럼 영문자와 숫자 8자입니다.",
    },
}


# What imageclean.py calls a file it refuses, in Korean (English: its own words).
KINDS_KO: Mapping[str, str] = {
    "a PDF document": "PDF 문서",
    "a ZIP archive or an office document": "압축 파일이나 문서 파일",
    "an office document": "문서 파일",
    "an RTF document": "RTF 문서",
    "a TIFF or camera RAW picture": "TIFF나 카메라 RAW 사진",
    "a Photoshop file": "포토샵 파일",
    "a video": "동영상",
    "a sound recording or video": "녹음이나 동영상",
    "a sound recording": "녹음 파일",
    "a compressed archive": "압축 파일",
    "a program": "프로그램",
    "a HEIC photo (the iPhone's own format)": "HEIC 사진(아이폰 형식)",
    "an AVIF picture": "AVIF 그림",
    "a BMP picture": "BMP 그림",
    "an SVG drawing": "SVG 그림",
    "a web page": "웹 페이지",
    "an XML document": "XML 문서",
    "an empty file": "빈 파일",
}
