"""fairseq's `Dictionary`: symbol <-> id mapping and the `dict.txt` file format.

The on-disk format is one `<symbol> <count>` per line, special symbols omitted (they always take
ids 0..3), optionally followed by the flag `#fairseq:overwrite`. Everything here that affects
ids or file bytes (finalize ordering, `madeupword` padding, counting eos per line) follows
fairseq 0.12.2 exactly, because a model trained with one dictionary is useless with another.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import IO

import numpy as np
import torch

from fairseq_lite.data.text_chunks import count_words, tokenize_line
from fairseq_lite.errors import DataError
from fairseq_lite.file_io import atomic_write

OVERWRITE_FLAG = "#fairseq:overwrite"


class Dictionary:
    """A mapping from symbols to consecutive integers, with fairseq's special symbols first."""

    def __init__(
        self,
        *,
        bos: str = "<s>",
        pad: str = "<pad>",
        eos: str = "</s>",
        unk: str = "<unk>",
        extra_special_symbols: Iterable[str] | None = None,
    ) -> None:
        self.bos_word, self.unk_word, self.pad_word, self.eos_word = bos, unk, pad, eos
        self.symbols: list[str] = []
        self.count: list[int] = []
        self.indices: dict[str, int] = {}
        self.bos_index = self.add_symbol(bos)
        self.pad_index = self.add_symbol(pad)
        self.eos_index = self.add_symbol(eos)
        self.unk_index = self.add_symbol(unk)
        for symbol in extra_special_symbols or ():
            self.add_symbol(symbol)
        self.nspecial = len(self.symbols)

    # ---------------------------------------------------------------- mapping

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Dictionary) and self.indices == other.indices

    def __getitem__(self, idx: int) -> str:
        if idx < len(self.symbols):
            return self.symbols[idx]
        return self.unk_word

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, sym: str) -> bool:
        return sym in self.indices

    def __repr__(self) -> str:
        return f"Dictionary({len(self)} symbols)"

    def get_count(self, idx: int) -> int:
        return self.count[idx]

    def index(self, sym: str) -> int:
        """The id of `sym`, or the unk id if it is not in the dictionary."""
        if not isinstance(sym, str):
            raise TypeError(f"Dictionary.index expects a str, got {type(sym).__name__}")
        return self.indices.get(sym, self.unk_index)

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    def unk_string(self, escape: bool = False) -> str:
        return f"<{self.unk_word}>" if escape else self.unk_word

    # ---------------------------------------------------------------- building

    def add_symbol(self, word: str, n: int = 1, overwrite: bool = False) -> int:
        """Add `word` (or add `n` to its count) and return its id.

        With `overwrite`, an existing word gets a new id (the old one stays in `symbols`); this is
        how fairseq's `#fairseq:overwrite` flag lets a dict.txt redefine a symbol.
        """
        idx = self.indices.get(word)
        if idx is not None and not overwrite:
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    def update(self, new_dict: Dictionary) -> None:
        """Add the symbols and counts of `new_dict` to this dictionary."""
        for word in new_dict.symbols:
            self.add_symbol(word, new_dict.count[new_dict.indices[word]])

    def finalize(self, threshold: int = -1, nwords: int = -1, padding_factor: int = 8) -> None:
        """Sort non-special symbols by descending count (ties: by symbol), then prune and pad.

        threshold: drop symbols seen fewer times. nwords: keep at most this many symbols in total,
        special ones included (<= 0: no limit). padding_factor: pad the size to a multiple of it
        with `madeupwordNNNN` symbols (tensor cores like multiples of 8).
        """
        if nwords <= 0:
            nwords = len(self)
        special = self.symbols[: self.nspecial]
        new_symbols = list(special)
        new_count = self.count[: self.nspecial]
        new_indices = {s: i for i, s in enumerate(special)}

        # A dict built from pairs sorted by symbol: the tie order fairseq gets from its Counter,
        # and, for a symbol listed twice (overwrite), the larger count wins as it does there.
        by_symbol = dict(sorted(zip(self.symbols[self.nspecial :], self.count[self.nspecial :])))
        ranked = sorted(by_symbol.items(), key=lambda kv: kv[1], reverse=True)  # stable
        for symbol, count in ranked[: max(0, nwords - self.nspecial)]:
            if count < threshold:
                break
            new_indices[symbol] = len(new_symbols)
            new_symbols.append(symbol)
            new_count.append(count)

        self.symbols, self.count, self.indices = new_symbols, new_count, new_indices
        self.pad_to_multiple_(padding_factor)

    def pad_to_multiple_(self, padding_factor: int) -> None:
        if padding_factor <= 1:
            return
        i = 0
        # A corpus may itself contain "madeupword0000"; add_symbol then only bumps its count and
        # the loop moves on to the next name, exactly as in fairseq.
        while len(self) % padding_factor != 0:
            self.add_symbol(f"madeupword{i:04d}", n=0)
            i += 1

    # ---------------------------------------------------------------- dict.txt I/O

    @classmethod
    def load(cls, f: str | os.PathLike | IO[str]) -> Dictionary:
        """Load a dict.txt (`<symbol> <count> [#fairseq:overwrite]` per line)."""
        d = cls()
        d.add_from_file(f)
        return d

    def add_from_file(self, f: str | os.PathLike | IO[str]) -> None:
        if isinstance(f, (str, os.PathLike)):
            path = os.fspath(f)
            try:
                with open(path, encoding="utf-8") as fd:
                    lines = fd.readlines()
            except FileNotFoundError:
                raise DataError(f"dictionary file not found: {path}") from None
            except IsADirectoryError:
                raise DataError(f"dictionary path is a directory, not a file: {path}") from None
            except UnicodeDecodeError as e:
                raise DataError(f"{path}: not valid UTF-8 (byte {e.start}); please rebuild the dictionary") from None
            except OSError as e:
                raise DataError(f"cannot read dictionary {path}: {e.strerror}") from None
        else:
            path = getattr(f, "name", "<dictionary>")
            lines = f.readlines()

        for lineno, raw in enumerate(lines, start=1):
            word, count, overwrite = _parse_dict_line(raw, path, lineno)
            if word in self and not overwrite:
                raise DataError(
                    f"{path}:{lineno}: duplicate word {word!r} in dictionary; add the flag "
                    f"'{OVERWRITE_FLAG}' at the end of the line if it should replace the earlier one"
                )
            self.add_symbol(word, n=count, overwrite=overwrite)

    def save(self, f: str | os.PathLike | IO[str]) -> None:
        """Write dict.txt. A path is written atomically (temp file in the same dir, then rename)."""
        if not isinstance(f, (str, os.PathLike)):
            f.write(self._dict_text())
            return
        path = os.fspath(f)
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with atomic_write(path, "w", encoding="utf-8", newline="\n") as fd:
            fd.write(self._dict_text())

    def _dict_text(self) -> str:
        out = io.StringIO()
        seen = set(self.symbols[: self.nspecial])
        for word, count in zip(self.symbols[self.nspecial :], self.count[self.nspecial :]):
            # fairseq drops the overwrite flag on save, which makes the file unloadable; we keep
            # it so a loaded dictionary round-trips (only matters for such unusual dictionaries).
            flag = f" {OVERWRITE_FLAG}" if word in seen else ""
            seen.add(word)
            out.write(f"{word} {count}{flag}\n")
        return out.getvalue()

    # ---------------------------------------------------------------- encode / decode

    def encode_line(
        self,
        line: str,
        line_tokenizer: Callable[[str], list[str]] = tokenize_line,
        add_if_not_exist: bool = True,
        consumer: Callable[[str, int], None] | None = None,
        append_eos: bool = True,
        reverse_order: bool = False,
    ) -> torch.IntTensor:
        words = line_tokenizer(line)
        if reverse_order:
            words = list(reversed(words))
        if add_if_not_exist:
            ids = [self.add_symbol(w) for w in words]
        else:
            ids = list(map(self.indices.get, words, repeat(self.unk_index)))
        if consumer is not None:
            for word, idx in zip(words, ids):
                consumer(word, idx)
        if append_eos:
            ids.append(self.eos_index)
        return torch.tensor(ids, dtype=torch.int32)

    def string(
        self,
        tensor: torch.Tensor | np.ndarray | Sequence[int],
        bpe_symbol: str | None = None,
        escape_unk: bool = False,
        extra_symbols_to_ignore: Iterable[int] | None = None,
        unk_string: str | None = None,
        include_eos: bool = False,
        separator: str = " ",
    ) -> str:
        """Ids -> text; bos/eos (unless `include_eos`) and `extra_symbols_to_ignore` are dropped.

        A 2-D tensor gives one line per row, joined with newlines.
        """
        if torch.is_tensor(tensor) and tensor.dim() == 2:
            return "\n".join(
                self.string(t, bpe_symbol, escape_unk, extra_symbols_to_ignore, unk_string, include_eos, separator)
                for t in tensor
            )
        ignore = set(extra_symbols_to_ignore or ())
        ignore.add(self.bos())
        if not include_eos:
            ignore.add(self.eos())
        ids = tensor.tolist() if hasattr(tensor, "tolist") else list(tensor)
        unk_text = unk_string if unk_string is not None else self.unk_string(escape_unk)
        sentence = separator.join(unk_text if i == self.unk_index else self[i] for i in ids if i not in ignore)
        return post_process(sentence, bpe_symbol)

    def dummy_sentence(self, length: int) -> torch.LongTensor:
        t = torch.Tensor(length).uniform_(self.nspecial + 1, len(self)).long()
        t[-1] = self.eos()
        return t

    # ---------------------------------------------------------------- counting corpora

    @staticmethod
    def add_file_to_dictionary(
        filename: str, dict: Dictionary, tokenize: Callable[[str], list[str]] = tokenize_line, num_workers: int = 1
    ) -> None:
        """Count the words of a text file (plus one eos per line) into `dict`, in parallel chunks."""
        for counter in count_words(filename, dict.eos_word, num_workers=num_workers, tokenize=tokenize):
            for word, count in sorted(counter.items()):
                dict.add_symbol(word, count)


def post_process(sentence: str, symbol: str | None) -> str:
    """Undo a subword segmentation in decoded text (fairseq's `--post-process` / `bpe_symbol`)."""
    if symbol is None or symbol == "none":
        return sentence
    if symbol == "sentencepiece":
        return sentence.replace(" ", "").replace("\u2581", " ").strip()
    if symbol == "wordpiece":
        return sentence.replace(" ", "").replace("_", " ").strip()
    if symbol == "letter":
        return sentence.replace(" ", "").replace("|", " ").strip()
    if symbol == "silence":
        return re.sub(" +", " ", sentence.replace("<SIL>", "")).strip()
    if symbol == "_EOW":
        return sentence.replace(" ", "").replace("_EOW", " ").strip()
    if symbol in ("subword_nmt", "@@ ", "@@"):
        marker = "@@ " if symbol == "subword_nmt" else symbol
        return (sentence + " ").replace(marker, "").rstrip()
    raise DataError(f"unknown post-process / bpe symbol: {symbol!r}")


def _parse_dict_line(raw: str, path: str, lineno: int) -> tuple[str, int, bool]:
    line = raw.rstrip()
    word, sep, field = line.rpartition(" ")
    overwrite = field == OVERWRITE_FLAG
    if overwrite:
        word, sep, field = word.rpartition(" ")
    try:
        if not sep:
            raise ValueError
        count = int(field)
    except ValueError:
        raise DataError(
            f"{path}:{lineno}: malformed dictionary line {line!r}, expected '<token> <count> [flags]'"
        ) from None
    return word, count, overwrite
