"""Byte-level BPE training: special tokens, GPT-2 pre-tokenisation, greatest-pair tie-break."""

from __future__ import annotations

from collections import Counter

import regex

GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _split_on_special(text: str, special_tokens: list[str]) -> list[str]:
    """The pieces of `text` between special tokens (longest special first); specials dropped."""
    if not special_tokens:
        return [text]
    ordered = sorted(special_tokens, key=len, reverse=True)
    return regex.split("|".join(regex.escape(s) for s in ordered), text)


def _pretokens(piece: str) -> list[str]:
    return regex.findall(GPT2_PATTERN, piece)


def _word_counts(text: str, special_tokens: list[str], offset: int) -> Counter[tuple[int, ...]]:
    """Each distinct pre-token as a tuple of byte ids (byte b has id offset + b), with its count."""
    counts: Counter[str] = Counter()
    for piece in _split_on_special(text, special_tokens):
        counts.update(_pretokens(piece))
    return Counter({tuple(offset + b for b in p.encode("utf-8")): n for p, n in counts.items()})


def _count_pairs(words: Counter[tuple[int, ...]]) -> Counter[tuple[int, int]]:
    """Adjacent pairs over all pre-tokens: every position counts, weighted by the word count."""
    pairs: Counter[tuple[int, int]] = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            pairs[pair] += count
    return pairs


def _merge(word: tuple[int, ...], pair: tuple[int, int], new_id: int) -> tuple[int, ...]:
    """Replace each occurrence of `pair`, scanning left to right without overlaps, by `new_id`."""
    out = []
    i = 0
    while i < len(word):
        if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return tuple(out)


def train_bpe(
    text: str, vocab_size: int, special_tokens: list[str]
) -> tuple[dict[int, bytes], list[tuple[bytes, bytes]]]:
    vocab: dict[int, bytes] = {}
    for s in special_tokens:
        vocab[len(vocab)] = s.encode("utf-8")
    offset = len(vocab)
    for b in range(256):
        vocab[offset + b] = bytes([b])

    words = _word_counts(text, special_tokens, offset)
    merges: list[tuple[bytes, bytes]] = []
    while len(vocab) < vocab_size:
        pairs = _count_pairs(words)
        if not pairs:
            break  # every pre-token is a single token: nothing left to merge
        # most frequent pair; ties go to the greatest (bytes, bytes) pair
        best = max(pairs, key=lambda p: (pairs[p], vocab[p[0]], vocab[p[1]]))
        new_id = len(vocab)
        vocab[new_id] = vocab[best[0]] + vocab[best[1]]
        merges.append((vocab[best[0]], vocab[best[1]]))
        merged: Counter[tuple[int, ...]] = Counter()
        for word, count in words.items():
            merged[_merge(word, best, new_id) if best[0] in word else word] += count
        words = merged
    return vocab, merges
