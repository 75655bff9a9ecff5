"""fairseq's tokenizers and BPEs (issue 14, item 2): moses, space, nltk; subword_nmt, fastbpe, gpt2,
hf_byte_bpe, bytes, characters, byte_bpe. Each encodes as fairseq does (GPT-2's ids equal fairseq's own
encoder's) and decodes back."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fairseq_lite.data.encoders.byte_level import smart_byte_decode
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.registry import BPE_REGISTRY, TOKENIZER_REGISTRY, component_node

ROOT = Path(__file__).resolve().parent
GPT2 = ROOT / "fixtures" / "gpt2_bpe"
PLAYS = ROOT.parent / "examples" / "language_model" / "data" / "shakespeare"
LINES = [
    "To be, or not to be, that is the question:",
    "Whether 'tis nobler in the mind to suffer",
    "Ünïcödé: café naïve Ελληνικά 日本語 😀",
]


def build(registry, name, **values):
    node = component_node(registry.kind, name)
    return registry.build(OmegaConf.merge(node, values))


def test_moses_tokenizes_with_fairseqs_options_and_detokenizes():
    moses = build(TOKENIZER_REGISTRY, "moses", source_lang="en", target_lang="en")
    assert moses.encode("It's a well-known fact.") == "It &apos;s a well @-@ known fact ."
    assert moses.decode(moses.encode("It's a well-known fact.")) == "It's a well-known fact."
    plain = build(TOKENIZER_REGISTRY, "moses", moses_no_dash_splits=True, moses_no_escape=True)
    assert plain.encode("It's a well-known fact.") == "It 's a well-known fact ."


def test_space_and_nltk_tokenizers():
    assert build(TOKENIZER_REGISTRY, "space").encode("a \t b  c") == "a b c"
    try:
        nltk = build(TOKENIZER_REGISTRY, "nltk")
    except ConfigError as e:  # NLTK's punkt model is a separate download, not always there
        assert "punkt" in str(e)
    else:
        assert nltk.encode("Hello, world.") == "Hello , world ."


@pytest.fixture(scope="module")
def subword_codes(tmp_path_factory):
    from subword_nmt.learn_bpe import learn_bpe

    out = tmp_path_factory.mktemp("bpe")
    text = (PLAYS / "hamlet_gut.txt").read_text(encoding="utf-8").splitlines()[:3000]
    with open(out / "codes", "w", encoding="utf-8") as codes:
        learn_bpe(text, codes, num_symbols=300)
    return out / "codes"


def test_subword_nmt_and_fastbpe_split_words_and_join_them_back(subword_codes, tmp_path):
    bpe = build(BPE_REGISTRY, "subword_nmt", bpe_codes=str(subword_codes))
    encoded = bpe.encode(LINES[1])
    assert "@@ " in encoded and encoded != LINES[1]
    assert bpe.decode(encoded) == LINES[1]
    # fastBPE's codes are the same merges with a count column: the same pieces
    merges = [line for line in subword_codes.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    fast_codes = tmp_path / "fast.codes"
    fast_codes.write_text("".join(f"{m} {1000 - i}\n" for i, m in enumerate(merges)), encoding="utf-8")
    fast = build(BPE_REGISTRY, "fastbpe", bpe_codes=str(fast_codes))
    assert fast.encode(LINES[1]) == encoded and fast.decode(encoded) == LINES[1]
    with pytest.raises(DataError, match="no subword-nmt BPE codes at"):
        build(BPE_REGISTRY, "subword_nmt", bpe_codes=str(tmp_path / "missing"))


def test_gpt2_bpe_gives_fairseqs_ids():
    bpe = build(
        BPE_REGISTRY, "gpt2", gpt2_encoder_json=str(GPT2 / "encoder.json"), gpt2_vocab_bpe=str(GPT2 / "vocab.bpe")
    )
    rows = [line.split("\t") for line in (GPT2 / "fairseq_encoded.tsv").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 7
    for text, ids in ((line[:-1] and "\t".join(line[:-1]), line[-1]) for line in rows):
        assert bpe.encode(text) == ids
        assert bpe.decode(ids) == text
    # symbols that are no BPE id stay as they are, as in fairseq
    assert bpe.decode(bpe.encode("To be") + " <unk> " + bpe.encode(" or not")) == "To be<unk> or not"
    assert bpe.is_beginning_of_word(bpe.encode(" be")) and not bpe.is_beginning_of_word(bpe.encode("be"))
    with pytest.raises(ConfigError, match="nothing can be downloaded"):
        build(BPE_REGISTRY, "gpt2", gpt2_encoder_json="https://x/encoder.json", gpt2_vocab_bpe=str(GPT2 / "vocab.bpe"))


def test_hf_byte_bpe_reads_vocab_and_merges():
    vocab = json.loads((GPT2 / "encoder.json").read_text(encoding="utf-8"))
    bpe = build(BPE_REGISTRY, "hf_byte_bpe", bpe_vocab=str(GPT2 / "encoder.json"), bpe_merges=str(GPT2 / "vocab.bpe"))
    encoded = bpe.encode(LINES[0])
    assert all(0 <= int(i) < len(vocab) for i in encoded.split()) and bpe.decode(encoded) == LINES[0]
    spaced = build(
        BPE_REGISTRY,
        "hf_byte_bpe",
        bpe_vocab=str(GPT2 / "encoder.json"),
        bpe_merges=str(GPT2 / "vocab.bpe"),
        bpe_add_prefix_space=True,
    )
    assert spaced.encode("To") == bpe.encode(" To")


def test_bytes_and_characters_are_fairseqs_symbols():
    bytes_bpe, chars = build(BPE_REGISTRY, "bytes"), build(BPE_REGISTRY, "characters")
    assert chars.encode("ab c") == "a b \u2581 c" and chars.decode("a b \u2581 c") == "ab c"
    # printable Latin-1 bytes stand for themselves, others are shifted by 256; a space is U+2581
    assert bytes_bpe.encode("é a\x01") == "Ã © \u2581 a \u0101"  # é is bytes C3 A9; byte 01 is chr(257)
    for line in LINES:
        assert bytes_bpe.decode(bytes_bpe.encode(line)) == line
    assert bytes_bpe.decode(bytes_bpe.encode("a  \t b")) == "a b"  # whitespace runs become one space
    # a model may generate invalid UTF-8: the characters that can be recovered are kept
    broken = bytes_bpe.encode("café")[:-2]  # the last character's second byte cut off
    assert smart_byte_decode(broken.replace(" ", "")) == "caf"


def test_byte_bpe_is_sentencepiece_over_bytes(tmp_path):
    import sentencepiece as spm

    from fairseq_lite.data.encoders.byte_level import byte_encode

    text = (PLAYS / "hamlet_gut.txt").read_text(encoding="utf-8").splitlines()[:2000]
    corpus = tmp_path / "bytes.txt"
    from fairseq_lite.data.encoders.byte_level import BYTE_TO_BCHAR

    # every byte's symbol appears, as in a real byte-level model, so that any text encodes without unks
    every_byte = "".join(c for b, c in BYTE_TO_BCHAR.items() if b != 32)
    lines = [byte_encode(line) for line in text if line.strip()] + [every_byte] * 3
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(tmp_path / "bbpe"),
        vocab_size=600,
        model_type="bpe",
        character_coverage=1.0,
        normalization_rule_name="identity",  # NFKC would fold some byte symbols (chr(383) into s)
        minloglevel=2,
    )
    bpe = build(BPE_REGISTRY, "byte_bpe", sentencepiece_model_path=str(tmp_path / "bbpe.model"))
    for line in LINES:
        # sentencepiece's dummy prefix comes back as a leading space: fairseq's byte_bpe keeps it too
        assert bpe.decode(bpe.encode(line)) == " " + line
    assert len(bpe.encode(LINES[0]).split()) < len(byte_encode(LINES[0]))
