"""dataset/build_corpus.py: each reader on a small sample in its source's real format, cleaning, packing, build."""
import gzip
import json
import random
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from dataset import build_corpus as bc

TOKENIZER = Tokenizer.from_file(str(bc.TOKENIZER_PATH))


def dictd_code(n: int) -> str:
    """Encode a number the way dictd index files do (base 64, most significant digit first)."""
    digits = ""
    while True:
        digits = bc.DICTD_DIGITS[n % 64] + digits
        n //= 64
        if not n:
            return digits


def write_dictd(folder: Path, name: str, entries: dict[str, str]) -> None:
    """A dictd database: <name>.dict.dz (gzip) and <name>.index; every headword points at its entry."""
    data, index = b"", []
    for head, body in entries.items():
        raw = body.encode()
        index.append(f"{head}\t{dictd_code(len(data))}\t{dictd_code(len(raw))}")
        data += raw
    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(folder / f"{name}.dict.dz", "wb") as f:
        f.write(data)
    (folder / f"{name}.index").write_text("\n".join(index) + "\n")


# --- readers ----------------------------------------------------------------------------------------------

def test_dictd_entries_reads_each_entry_once_and_skips_the_database_notes():
    index = "00-database-info\tA\tF\nliar\tF\tK\nLiar\tF\tK\nhope\tP\tK\n"
    data = b"info:liar entryhope entry"
    assert bc.dictd_number("BA") == 64
    assert bc.dictd_entries(index, data) == ["liar entry", "hope entry"]


def test_gcide_entry_becomes_word_pos_and_senses_without_markup():
    entry = ('Dog \\Dog\\ (d[o^]g), n. [AS. docga; akin to D. dog\n   mastiff.]\n'
             '   1. (Zool.) A quadruped of the genus {Canis}, esp. the\n      domestic dog.\n      [1913 Webster]\n\n'
             '   2. A mean, worthless fellow; a wretch. --Shak.\n      [1913 Webster]\n')
    paragraphs = bc.gcide_paragraphs(entry)
    assert paragraphs == ["Dog (n.): 1. (Zool.) A quadruped of the genus Canis, esp. the domestic dog.",
                          "2. A mean, worthless fellow; a wretch. — Shak."]


def test_dict_entries_foldoc_jargon_and_devil():
    foldoc = ('exclamation mark\n!\nexcl\n\n   <character> The character "!" with {ASCII} code 33.\n\n'
              "   (1998-09-17)\n")
    assert bc.dict_paragraphs(foldoc) == ['exclamation mark: The character "!" with ASCII code 33.']
    jargon = "leak\n n.\n\n    With qualifier, one of a class of resource-management bugs.\n"
    assert bc.dict_paragraphs(jargon) == ["leak (n.): With qualifier, one of a class of resource-management bugs."]
    devil = "LIAR, n.  A lawyer with a roving\ncommission.\n\n"
    assert bc.dict_paragraphs(devil) == ["LIAR, n.  A lawyer with a roving commission."]


def test_wordnet_lines_become_gloss_sentences_and_the_licence_header_is_skipped():
    text = ("  1 This software and database is being provided to you, the LICENSEE, by Princeton University\n"
            "00976953 04 n 03 foray 0 raid 0 maraud 0 006 @ 00975452 n 0000 | a sudden short attack  \n"
            "00001740 00 a 01 able(a) 0 005 | having the necessary means; \"able to swim\"  \n")
    assert bc.wordnet_paragraphs(text) == ["foray, raid, maraud (noun): a sudden short attack",
                                           'able (adjective): having the necessary means; "able to swim"']


def test_fortunes_split_strip_colours_unwrap_prose_and_keep_verse():
    text = ("\x1b[32m《静夜思》\x1b[m\n\x1b[33m作者：李白\x1b[m\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。\n%\n"
            "It is a long established fact that a reader will be distracted by\nthe readable content of a page.\n"
            "    -- Someone Wise\n%\n")
    zh, en = bc.fortune_paragraphs(text)
    assert zh == "《静夜思》\n作者：李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"
    assert en == ("It is a long established fact that a reader will be distracted by the readable content of a page."
                  "\n— Someone Wise")


def test_html_keeps_block_text_and_drops_code_scripts_and_head():
    html = ("<html><head><title>T</title><script>var x = 1;</script></head><body>"
            "<h1>安装</h1><p>运行 <code>apt</code>\n 命令&amp;完成。</p><pre>$ sudo apt install x</pre>"
            "<ul><li>First item</li><li>Second</li></ul></body></html>")
    assert bc.html_paragraphs(html) == ["安装", "运行 apt 命令&完成。", "First item", "Second"]


def test_roff_keeps_prose_and_drops_comments_headings_and_examples():
    roff = ('.\\" comment\n.TH LS 1\n.SH 名称\nls \\- 列出目录内容\n.PP\n列出指定\n“文件”的信息，参见 \\fB\\-\\-sort\\fP。\n'
            ".nf\n$ ls -l\n.fi\n.TP\n\\fB\\-a\\fP, \\fB\\-\\-all\\fP\n不要忽略以点号起始的条目\n")
    assert bc.roff_paragraphs(roff) == ["ls - 列出目录内容", "列出指定 “文件”的信息，参见 --sort。",
                                        "-a, --all 不要忽略以点号起始的条目"]


def test_cedict_groups_by_first_character_and_drops_cross_references():
    text = ("# CC-CEDICT\n傳 传 [chuan2] /to pass on/to spread/\n傳統 传统 [chuan2 tong3] /tradition/traditional/\n"
            "個 个 [ge4] /individual/CL:個|个[ge4]/\n傳説 传说 [chuan2 shuo1] /variant of 傳說|传说[chuan2 shuo1]/\n")
    assert bc.cedict_paragraphs(text) == ["传：to pass on; to spread\n传统：tradition; traditional", "个：individual"]


def test_idioms_fill_in_the_word_drop_empty_fields_and_lost_quotes():
    record = {"word": "鹦鹉学舌", "pinyin": "yīng wǔ xué shé", "explanation": "比喻人家怎么说，他也跟着怎么说。",
              "derivation": "《景德传灯录》如鹦鹉只学人言，不得人意。”", "example": "他就说什么，简直是～。★老舍", }
    assert bc.idiom_paragraphs([record, {**record, "example": "无"}]) == [
        "【鹦鹉学舌】（yīng wǔ xué shé）比喻人家怎么说，他也跟着怎么说。\n出处：《景德传灯录》如鹦鹉只学人言，不得人意。\n"
        "例子：他就说什么，简直是鹦鹉学舌。——老舍",
        "【鹦鹉学舌】（yīng wǔ xué shé）比喻人家怎么说，他也跟着怎么说。\n出处：《景德传灯录》如鹦鹉只学人言，不得人意。"]


def test_poetry_json_in_any_nesting():
    data = {"title": "千家诗", "content": [{"type": "七言", "content": [
        {"chapter": "春日", "author": "朱熹", "paragraphs": ["胜日寻芳泗水滨，", "无边光景一时新。"]}]}]}
    assert bc.poetry_paragraphs(data) == ["《春日》朱熹\n胜日寻芳泗水滨，\n无边光景一时新。"]
    assert bc.poetry_paragraphs([{"name": "苏轼", "description": "北宋文学家。"}]) == ["苏轼：北宋文学家。"]


# --- cleaning ---------------------------------------------------------------------------------------------

def test_clean_removes_links_and_mail_and_closes_chinese_gaps():
    text = "See the archive (http://example.org/a?b=1) or mail someone@example.com for the whole story."
    assert bc.clean_paragraph(text) == "See the archive or mail for the whole story."
    assert bc.clean_paragraph("中文 文本\u3000会把 换行 留下的 空格 去掉，只保留 Debian 两边的空格。") == \
        "中文文本会把换行留下的空格去掉，只保留 Debian 两边的空格。"


@pytest.mark.parametrize("junk", ["Next", "短句。", "#include <stdio.h> { int x = 3 * (y + z); return x; }",
                                  "+--------+--------+--------+--------+", "os.path.join(a, b) os.path.split(p)",
                                  "readline.remove_history_item(pos) readline.add_history(line)"])
def test_clean_drops_short_and_symbol_heavy_text(junk):
    assert bc.clean_paragraph(junk) is None


def test_language_split():
    assert bc.language("床前明月光，疑是地上霜。") == "zh"
    assert bc.language("A quadruped of the genus Canis.") == "en"
    assert bc.language("传统：tradition; traditional; convention") == "mixed"


# --- packing ----------------------------------------------------------------------------------------------

def sample_paragraphs(rng: random.Random, n: int) -> list[str]:
    """Paragraphs of very different lengths, including ones far above the limit, in both languages."""
    words = ["tradition", "river", "quickly", "the", "of", "dictionary", "明月", "故乡", "学习", "软件", "自由"]
    out = []
    for i in range(n):
        size = rng.choice([3, 20, 80, 400, 900])
        sep = "" if i % 2 else " "
        body = sep.join(rng.choice(words) for _ in range(size))
        out.append(body + ("。" if i % 3 else ". Another sentence follows here."))
    out.append("x" * 3000)  # one 'word' with no place to split but between tokens
    return out


@pytest.mark.parametrize("max_tokens", [32, 320])
def test_pack_respects_the_limit_and_keeps_every_character(max_tokens):
    paragraphs = sample_paragraphs(random.Random(0), 40)
    samples, counts = bc.pack(paragraphs, TOKENIZER, max_tokens)
    assert counts == bc.count_tokens(TOKENIZER, samples)
    assert max(counts) <= max_tokens
    squeeze = lambda texts: re.sub(r"\s", "", "".join(texts))  # noqa: E731
    assert squeeze(samples) == squeeze(paragraphs)
    assert sum(counts) / len(counts) > 0.6 * max_tokens  # little would be padding


# --- the whole build --------------------------------------------------------------------------------------

def make_root(tmp_path: Path) -> Path:
    """A fake unpacked Debian tree with the Devil's Dictionary and one fortune file."""
    root = tmp_path / "debroot"
    write_dictd(root / "usr/share/dictd", "devil", {
        "00-database-info": "The original data is available from http://example.org\n",
        "liar": "LIAR, n.  A lawyer with a roving commission.\n\n",
        "hope": "HOPE, n.  Desire and expectation rolled into one.\n\n",
        "armor": "ARMOR, n.  The kind of clothing worn by a man whose tailor is a blacksmith.\n\n",
    })
    fortunes = root / "usr/share/games/fortunes"
    fortunes.mkdir(parents=True)
    items = [f"Saying number {i} is wiser than the one before it, see www.example.com/{i} for more." for i in range(60)]
    items += ["LIAR, n. A lawyer with a roving commission."] * 3  # duplicates, also of the dictionary
    (fortunes / "wisdom").write_text("\n%\n".join(items) + "\n%\n")
    (fortunes / "medicine").write_text("A doctor a day keeps the apples far away, or so they say.\n%\n")
    return root


def read_jsonl(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_main_is_deterministic_dedupes_and_drops_links(tmp_path, capsys):
    root = make_root(tmp_path)
    args = ["--sources", "devil,fortunes_en", "--deb_root", str(root), "--max_tokens", "64"]
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        bc.main(args + ["--out", str(tmp_path / f"{name}.jsonl"), "--seed", str(seed)])
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes() and sorted(read_jsonl(a)) == sorted(read_jsonl(c))
    paragraphs = [p for text in read_jsonl(a) for p in text.split("\n")]
    assert len(paragraphs) == len(set(paragraphs)) == 3 + 60  # the repeated entry is kept once
    assert not any(bc.URL_RE.search(p) or "doctor" in p for p in paragraphs)
    assert max(bc.count_tokens(TOKENIZER, read_jsonl(a))) <= 64
    printed = capsys.readouterr().out
    assert "language split" in printed and "sha256" in printed


def test_limit_tokens_takes_each_source_in_proportion(tmp_path):
    root = make_root(tmp_path)
    sources = bc.pick_sources("devil,fortunes_en")
    _, full = bc.build(sources, [root], tmp_path, TOKENIZER, 32, seed=0)
    samples, part = bc.build(sources, [root], tmp_path, TOKENIZER, 32, seed=0, limit_tokens=400)
    total = sum(sum(r.tokens) for r in part)
    assert 400 <= total < 400 + 2 * 32 and len(samples) == sum(len(r.samples) for r in part)
    for whole, cut in zip(full, part):
        assert sum(cut.tokens) == pytest.approx(400 * sum(whole.tokens) / sum(sum(r.tokens) for r in full), abs=32)


def test_missing_source_is_skipped_with_the_package_to_install(tmp_path, capsys):
    samples, results = bc.build(bc.pick_sources("gcide"), [tmp_path], tmp_path, TOKENIZER, 320, seed=0)
    assert samples == [] and results == []
    assert "apt-get install dict-gcide" in capsys.readouterr().out
