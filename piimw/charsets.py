"""Pages read as browsers read them: which encoding a text response is in.

A page piimw scans must be read the way the browser that shows it will read it: otherwise a
value hides in bytes piimw decodes differently (a UTF-8 name read as latin-1, an e-mail split
by ISO-2022-JP escapes, text under a label browsers do not know). The WHATWG Encoding
Standard decides: byte order marks first, then the label, windows-1252 for latin-1 and ASCII.
"""

from __future__ import annotations

import codecs
import re

__all__ = ["encode_page", "page_text"]

#: Labels browsers read as windows-1252 (the WHATWG Encoding Standard's list, plus Python's
#: "latin-1"): its 0x80-0x9F are letters (``Š``, ``Ž``, ``€``) where latin-1 has controls.
_WINDOWS_1252 = frozenset({
    "ansi_x3.4-1968", "ascii", "cp1252", "cp819", "csisolatin1", "ibm819", "iso-8859-1",
    "iso-ir-100", "iso8859-1", "iso88591", "iso_8859-1", "iso_8859-1:1987", "l1", "latin1",
    "latin-1", "us-ascii", "windows-1252", "x-cp1252"})
#: windows-1252 as WHATWG defines it, over latin-1: the 27 bytes of 0x80-0x9F that name
#: letters, and back; the five it leaves undefined stay the code points of their bytes.
_FROM_LATIN1 = {i: bytes([i]).decode("cp1252") for i in range(0x80, 0xA0)
                if i not in (0x81, 0x8D, 0x8F, 0x90, 0x9D)}
_TO_LATIN1 = {ord(ch): i for i, ch in _FROM_LATIN1.items()}


#: Python's names for the encodings browsers know (WHATWG Encoding Standard). A label naming
#: another codec (UTF-7, UTF-32, EBCDIC, punycode) is read as if absent: browsers fall back,
#: and would show text that codec hides.
_BROWSER_CODECS = frozenset({
    "utf-8", "utf-16", "utf-16-le", "utf-16-be", "cp866", "koi8-r", "koi8-u", "mac-roman",
    "mac-cyrillic", "cp874", "gbk", "gb18030", "big5", "big5hkscs", "euc_jp", "iso2022_jp",
    "shift_jis", "cp932", "euc_kr", "cp949",
    *(f"iso8859-{n}" for n in (2, 3, 4, 5, 6, 7, 8, 10, 13, 14, 15, 16)),
    *(f"cp125{n}" for n in range(9)),
})
#: Where browsers read a label's encoding as a wider one than Python's codec of that name
#: (WHATWG: every ISO-8859-9 label is windows-1254, TIS-620 is windows-874, EUC-KR is
#: windows-949, GB2312 is GBK, whose decoder is GB18030's, Shift_JIS is windows-31J, Big5
#: has the HKSCS extensions): read with the narrower codec, bytes only the wider one defines
#: (``\x8a``, Š in windows-1254) were controls or replaced, and a value holding them hid.
_AS_BROWSERS = {"iso8859-9": "cp1254", "iso8859-11": "cp874", "tis-620": "cp874",
                "euc_kr": "cp949", "gb2312": "gb18030", "gbk": "gb18030",
                "shift_jis": "cp932", "big5": "big5hkscs"}
#: A ``<meta charset>`` or ``<meta http-equiv content="...; charset=...">`` near the top.
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
#: Byte order marks, which decide the encoding whatever the label says.
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def page_text(raw: bytes, charset: str | None) -> tuple[str, str, bool]:
    """(text, the codec to write it back with, whether a UTF-8 reading must be checked too).

    Read as a browser reads it: a byte order mark first; then the header's charset, else a
    ``<meta>`` charset in the first 1024 bytes, if browsers know it (read with invalid bytes
    replaced: falling back to latin-1 would turn a UTF-8 page's non-ASCII values into text
    no known value matches; latin-1 and ASCII labels as windows-1252). Without one: a page
    with ESC bytes that reads as ISO-2022-JP as such (browsers detect it, and its escapes
    would otherwise split values); else UTF-8 if the bytes are UTF-8, else windows-1252, the
    UTF-8 reading then checked as well.
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return raw.decode(codec, errors="replace"), codec, False
    if charset is None:
        meta = _META_CHARSET.search(raw[:1024])
        charset = meta.group(1).decode("ascii") if meta else None
    if charset is not None:
        label = charset.strip().strip("\"'").lower()
        if label in _WINDOWS_1252:
            return raw.decode("latin-1").translate(_FROM_LATIN1), _CP1252, False
        try:
            name = codecs.lookup(label).name
        except LookupError:
            name = ""
        name = _AS_BROWSERS.get(name, name)
        if name in _BROWSER_CODECS:
            return raw.decode(name, errors="replace"), name, False
    if b"\x1b" in raw:
        try:
            return raw.decode("iso2022_jp"), "iso2022_jp", False
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8"), "utf-8", False
    except UnicodeDecodeError:
        return raw.decode("latin-1").translate(_FROM_LATIN1), _CP1252, True


#: windows-1252 as browsers read it (see _FROM_LATIN1).
_CP1252 = "whatwg-windows-1252"


def encode_page(text: str, codec: str) -> bytes:
    if codec == _CP1252:
        return text.translate(_TO_LATIN1).encode("latin-1", errors="replace")
    return text.encode(codec, errors="replace")
