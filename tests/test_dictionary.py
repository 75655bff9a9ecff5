"""Dictionary: fairseq's ids, finalize order, dict.txt format, encode/decode."""

import io
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from fairseq_lite.data import Dictionary
from fairseq_lite.data.binarizer import encode_lines
from fairseq_lite.data.dictionary import tokenize_line
from fairseq_lite.data.text_chunks import count_words
from fairseq_lite.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq_0.12.2"


def make_dict(counts, **finalize_kwargs):
    d = Dictionary()
    for word, n in counts.items():
        d.add_symbol(word, n)
    d.finalize(**finalize_kwargs)
    return d


def test_special_symbols():
    d = Dictionary()
    assert [d.bos(), d.pad(), d.eos(), d.unk()] == [0, 1, 2, 3]
    assert d.symbols == ["<s>", "<pad>", "</s>", "<unk>"]
    assert d.nspecial == 4 and len(d) == 4
    d2 = Dictionary(extra_special_symbols=["<mask>"])
    assert d2.index("<mask>") == 4 and d2.nspecial == 5


def test_mapping_api():
    d = Dictionary()
    assert d.add_symbol("hello") == 4
    assert d.add_symbol("hello", n=3) == 4 and d.get_count(4) == 4
    assert d.index("hello") == 4 and d.index("nope") == d.unk()
    assert d[4] == "hello" and d[999] == "<unk>"
    assert "hello" in d and "nope" not in d
    assert d.add_symbol("hello", overwrite=True) == 5 and d.index("hello") == 5
    other = Dictionary()
    other.add_symbol("hello")
    assert other != d
    with pytest.raises(TypeError):
        d.index(4)


def test_finalize_orders_by_count_then_symbol_and_pads():
    d = make_dict({"b": 2, "a": 2, "c": 5, "z": 1, "y": 1})
    assert d.symbols[4:9] == ["c", "a", "b", "y", "z"]
    assert d.symbols[9:] == [f"madeupword{i:04d}" for i in range(7)]
    assert len(d) == 16 and d.count[9:] == [0] * 7


def test_finalize_threshold_and_nwords():
    counts = {"b": 2, "a": 2, "c": 5, "z": 1, "y": 1}
    assert make_dict(counts, threshold=2, padding_factor=1).symbols[4:] == ["c", "a", "b"]
    assert make_dict(counts, nwords=6, padding_factor=1).symbols[4:] == ["c", "a"]
    assert make_dict(counts, nwords=2, padding_factor=1).symbols == Dictionary().symbols


def test_padding_skips_madeupword_already_in_corpus():
    d = make_dict({"madeupword0000": 1, "x": 1})
    assert d.symbols[4:] == ["madeupword0000", "x", "madeupword0001", "madeupword0002"]


def test_load_save_round_trip_is_byte_identical(tmp_path):
    for fixture in ("mono/dict.txt", "edge/dict.txt", "bi/dict.es.txt"):
        src = FIXTURES / fixture
        d = Dictionary.load(str(src))
        out = tmp_path / "sub" / "dict.txt"  # save creates missing parent dirs
        d.save(str(out))
        assert out.read_bytes() == src.read_bytes()
        assert Dictionary.load(out) == d
        assert os.listdir(out.parent) == ["dict.txt"]  # no temp file left behind


def test_load_from_file_object_and_overwrite_flag():
    d = Dictionary.load(io.StringIO("a 3\nb 2\na 1 #fairseq:overwrite\nwith space 7\n"))
    assert d.index("a") == 6 and d.index("b") == 5 and d.index("with space") == 7
    buf = io.StringIO()
    d.save(buf)
    assert Dictionary.load(io.StringIO(buf.getvalue())) == d


@pytest.mark.parametrize(
    "text,line,words",
    [
        ("a 1\nb 2\na 3\n", 3, "duplicate word 'a'"),
        ("a 1\nnocount\n", 2, "malformed"),
        ("a 1\nb x\n", 2, "malformed"),
        ("a 1\n\n", 2, "malformed"),
        ("<unk> 5\n", 1, "duplicate"),
    ],
)
def test_load_errors_name_file_and_line(text, line, words, tmp_path):
    path = tmp_path / "dict.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(f"{path}:{line}: ") + ".*" + re.escape(words)):
        Dictionary.load(str(path))


def test_load_missing_or_binary_file(tmp_path):
    with pytest.raises(DataError, match="not found.*nope.txt"):
        Dictionary.load(str(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9 1\n")
    with pytest.raises(DataError, match="UTF-8"):
        Dictionary.load(str(bad))


def test_failed_save_leaves_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "dict.txt"
    path.write_text("old 1\n")
    d = make_dict({"new": 1})
    monkeypatch.setattr(Dictionary, "_dict_text", lambda self: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        d.save(str(path))
    assert path.read_text() == "old 1\n" and os.listdir(tmp_path) == ["dict.txt"]


def test_encode_line():
    d = make_dict({"hello": 2, "world": 1})
    ids = d.encode_line("  hello\tworld  unknown\n", add_if_not_exist=False)
    assert ids.dtype == torch.int32
    assert ids.tolist() == [d.index("hello"), d.index("world"), d.unk(), d.eos()]
    assert d.encode_line("hello world", add_if_not_exist=False, append_eos=False, reverse_order=True).tolist() == [
        d.index("world"),
        d.index("hello"),
    ]
    seen = []
    d.encode_line("hello new", add_if_not_exist=False, consumer=lambda w, i: seen.append((w, i)))
    assert seen == [("hello", d.index("hello")), ("new", d.unk())]
    n = len(d)
    assert d.encode_line("brand new")[:2].tolist() == [n, n + 1]  # add_if_not_exist defaults to True


def test_string_round_trip_and_options():
    d = make_dict({"the": 3, "cat": 2, "sat@@": 1, "isfied": 1})
    ids = d.encode_line("the cat sat@@ isfied", add_if_not_exist=False)
    assert d.string(ids) == "the cat sat@@ isfied"
    assert d.string(ids, bpe_symbol="@@ ") == "the cat satisfied"
    assert d.string(ids, include_eos=True) == "the cat sat@@ isfied </s>"
    assert d.string(ids, extra_symbols_to_ignore=[d.index("cat")]) == "the sat@@ isfied"
    with_unk = torch.tensor([d.bos(), d.index("the"), d.unk(), d.eos()])
    assert d.string(with_unk) == "the <unk>"
    assert d.string(with_unk, escape_unk=True) == "the <<unk>>"
    assert d.string(with_unk, unk_string="UNK") == "the UNK"
    batch = torch.stack([ids, ids.flip(0)])
    assert d.string(batch).split("\n")[0] == "the cat sat@@ isfied"
    assert d.string([d.index("cat")]) == "cat"


def test_dummy_sentence():
    d = make_dict({w: 1 for w in "abcdefghij"})
    t = d.dummy_sentence(7)
    assert t.shape == (7,) and t[-1] == d.eos()
    assert ((t[:-1] > d.nspecial) & (t[:-1] < len(d))).all()


def test_tokenize_line_matches_fairseq_definition():
    space = re.compile(r"\s+")
    for line in ["", " a  b\t c\n", "x\u00a0y\u3000z\u2028w\x85v\x1cq", "zero\u200bwidth", "\t\r\n"]:
        assert tokenize_line(line) == space.sub(" ", line).strip().split()


def test_file_counts_same_with_workers_and_match_fairseq_dict():
    path = str(FIXTURES / "inputs" / "edge.txt")
    serial, parallel = Dictionary(), Dictionary()
    Dictionary.add_file_to_dictionary(path, serial, tokenize_line, 1)
    Dictionary.add_file_to_dictionary(path, parallel, tokenize_line, 3)
    # Insertion order follows the chunks (as in fairseq); the counts are what must agree.
    assert dict(zip(serial.symbols, serial.count)) == dict(zip(parallel.symbols, parallel.count))
    parallel.finalize()
    assert serial.count[serial.eos()] == 1 + 13 + 1  # initial 1, one per line, one literal "</s>"
    serial.finalize()
    assert serial == parallel == Dictionary.load(str(FIXTURES / "edge" / "dict.txt"))


def test_count_words_chunks_cover_file():
    path = str(FIXTURES / "inputs" / "train.txt")
    total = sum(count_words(path, "</s>", num_workers=4), Counter())
    text = open(path, encoding="utf-8").read()
    assert total == Counter(text.split()) + Counter({"</s>": text.count("\n")})


def test_batched_encode_equals_encode_line():
    d = Dictionary.load(str(FIXTURES / "mono" / "dict.txt"))
    lines = (FIXTURES / "inputs" / "edge.txt").read_text(encoding="utf-8").split("\n")
    for append_eos in (True, False):
        for reverse in (True, False):
            tokens, sizes, replaced = encode_lines(lines, d, append_eos, reverse)
            expected = [
                d.encode_line(x, add_if_not_exist=False, append_eos=append_eos, reverse_order=reverse) for x in lines
            ]
            assert sizes.tolist() == [len(e) for e in expected]
            assert tokens.tolist() == torch.cat(expected).tolist()
    words = " ".join(lines).split()
    assert replaced == Counter(w for w in words if w not in d and w != "<unk>")
