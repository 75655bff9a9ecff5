"""Reading a text file the way fairseq does, fast: in blocks that end on a line break, in byte-range
chunks that start on a line (one per worker), with fairseq's tokenization and word counts.

Used to count words for a dictionary (data/dictionary.py) and to encode lines into ids
(data/binarizer.py).
"""

import os
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing import Pool

from fairseq_lite.errors import DataError

Tokenizer = Callable[[str], list[str]]

# Large enough that per-block overhead vanishes, small enough that a block's token list stays a
# few hundred MB at most.
BLOCK_BYTES = 8 << 20


def tokenize_line(line: str) -> list[str]:
    # fairseq collapses runs of `\s` and strips; Python's `\s` and str.split() use the same set of
    # whitespace characters, so a plain split() gives identical tokens, much faster.
    return line.split()


# ---------------------------------------------------------------- reading text in chunks


def find_offsets(path: str, num_chunks: int) -> list[int]:
    """`num_chunks + 1` byte offsets splitting the file into chunks that start on a line."""
    size = _file_size(path)
    chunk_size = size // num_chunks
    offsets = [0] * (num_chunks + 1)
    offsets[-1] = size
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            # Like fairseq: the chunk boundary goes after the line holding byte chunk_size * i.
            offsets[i] = max(offsets[i - 1], _next_line_start(f, chunk_size * i, size))
    return offsets


def _next_line_start(f, pos: int, size: int) -> int:
    f.seek(pos)
    while pos < size:
        block = f.read(1 << 16)
        if not block:
            break
        newline = block.find(b"\n")
        if newline >= 0:
            return pos + newline + 1
        pos += len(block)
    return size


def read_text_blocks(
    path: str, start: int = 0, end: int | None = None, block_bytes: int = BLOCK_BYTES
) -> Iterator[str]:
    """Decoded text of bytes [start, end) of a file, in blocks that each end on a line break.

    Line breaks are normalized to "\\n" as Python's universal newlines (and so fairseq) read them.
    """
    if end is None:
        end = _file_size(path)
    with open(path, "rb") as f:
        f.seek(start)
        pos = block_start = start
        pending = b""
        while pos < end:
            buf = f.read(min(block_bytes, end - pos))
            if not buf:  # the file shrank under us; use what we have
                break
            pos += len(buf)
            pending += buf
            if pos < end:
                # Cut after the last "\n": it never splits a UTF-8 character nor a "\r\n".
                cut = pending.rfind(b"\n") + 1
                if cut == 0:
                    continue  # a line longer than a block: keep reading
                block, pending = pending[:cut], pending[cut:]
            else:
                block, pending = pending, b""
            yield _decode(block, path, block_start)
            block_start += len(block)
        if pending:
            yield _decode(pending, path, block_start)


def _decode(data: bytes, path: str, offset: int) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        position = offset + e.start
        raise DataError(
            f"{path}:{_line_number(path, position)}: invalid UTF-8 (byte {position}); input text must be UTF-8"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _line_number(path: str, position: int) -> int:
    """1-based number of the line holding byte `position` (only computed for error messages)."""
    newlines = 0
    with open(path, "rb") as f:
        while position > 0:
            block = f.read(min(position, 1 << 20))
            if not block:
                break
            newlines += block.count(b"\n")
            position -= len(block)
    return newlines + 1


def split_lines(text: str) -> list[str]:
    """Lines of a normalized block, without their "\\n" (not str.splitlines: that also breaks
    on characters such as \\x1c or \\u2028, which fairseq treats as spaces inside a line)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        raise DataError(f"input file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def file_chunks(path: str, num_workers: int) -> list[tuple[int, int]]:
    offsets = find_offsets(path, max(1, num_workers))
    chunks = [(s, e) for s, e in zip(offsets, offsets[1:]) if e > s]
    return chunks or [(0, 0)]


# ---------------------------------------------------------------- counting words


def count_words(path: str, eos_word: str, num_workers: int = 1, tokenize: Tokenizer | None = None) -> list[Counter]:
    """Word counts (plus `eos_word` once per line) of a text file, one Counter per chunk, in order."""
    chunks = file_chunks(path, num_workers)
    args = [(path, eos_word, start, end, tokenize) for start, end in chunks]
    if len(chunks) == 1:
        return [_count_chunk(*args[0])]
    with Pool(processes=min(num_workers, len(chunks))) as pool:
        return pool.starmap(_count_chunk, args)


def _count_chunk(path: str, eos_word: str, start: int, end: int, tokenize: Tokenizer | None) -> Counter:
    tokenize = fast_tokenizer(tokenize)
    counter: Counter = Counter()
    num_lines = 0
    for text in read_text_blocks(path, start, end):
        if tokenize is None:
            counter.update(text.split())  # line breaks are whitespace too
            num_lines += text.count("\n") + (0 if not text or text.endswith("\n") else 1)
        else:
            for line in split_lines(text):
                counter.update(tokenize(line))
                num_lines += 1
    if num_lines:
        counter[eos_word] += num_lines
    return counter


def fast_tokenizer(tokenize: Tokenizer | None) -> Tokenizer | None:
    """None when `tokenize` is the default whitespace split, which has a faster batched path."""
    return None if tokenize in (None, tokenize_line) else tokenize
