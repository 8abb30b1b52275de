"""A byte-level BPE tokenizer (GPT-2 style) built from a vocabulary and a ranked merge list."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import regex

# GPT-2's pre-tokenizer (the one Hugging Face's ByteLevel pre-tokenizer uses). The contraction
# alternatives are written as one group; they match exactly what 's|'t|'re|'ve|'m|'ll|'d does.
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
PRETOKEN = regex.compile(PATTERN)

NO_MERGE = float("inf")


class Tokenizer:
    """Encode text to token ids and decode ids to text with a byte-level BPE vocabulary."""

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: list[tuple[bytes, bytes]],
        special_tokens: list[str] | None = None,
    ) -> None:
        self.vocab = dict(vocab)
        self.id_of = {token: i for i, token in self.vocab.items()}
        self.merges = list(merges)
        self.rank = {pair: r for r, pair in enumerate(self.merges)}
        self.special_tokens = list(special_tokens or [])
        # Longest first: the regex alternation takes the first alternative that matches at a
        # position, so "<|endoftext|><|endoftext|>" must be tried before "<|endoftext|>".
        ordered = sorted(self.special_tokens, key=len, reverse=True)
        alternatives = "|".join(regex.escape(s) for s in ordered)
        self.special_re = regex.compile(f"({alternatives})") if ordered else None
        self.cache: dict[str, list[int]] = {}

    def _pieces(self, text: str) -> list[tuple[bool, str]]:
        """The text as (is_special, string) pieces in order: special tokens and pre-tokens."""
        parts = self.special_re.split(text) if self.special_re is not None else [text]
        pieces: list[tuple[bool, str]] = []
        for k, part in enumerate(parts):
            if k % 2 == 1:  # re.split with a capturing group puts the separators at odd indices
                pieces.append((True, part))
            else:
                pieces.extend((False, p) for p in PRETOKEN.findall(part))
        return pieces

    def _merge(self, pretoken: str) -> list[int]:
        """BPE on one pre-token: merge the leftmost lowest-rank adjacent pair, one occurrence at
        a time (a new token may pair with its neighbour at a lower rank), until none is left."""
        parts = [bytes([b]) for b in pretoken.encode("utf-8")]
        while len(parts) > 1:
            ranks = [self.rank.get(pair, NO_MERGE) for pair in zip(parts, parts[1:])]
            best = min(range(len(ranks)), key=ranks.__getitem__)  # min keeps the leftmost of ties
            if ranks[best] == NO_MERGE:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        return [self.id_of[p] for p in parts]

    def _encode_piece(self, piece: tuple[bool, str]) -> list[int]:
        is_special, s = piece
        if is_special:
            return [self.id_of[s.encode("utf-8")]]
        if s not in self.cache:
            self.cache[s] = self._merge(s)
        return self.cache[s]

    def encode(self, text: str) -> list[int]:
        return [i for piece in self._pieces(text) for i in self._encode_piece(piece)]

    def encode_iterable(self, iterable: Iterable[str]) -> Iterator[int]:
        # The last pre-token of a chunk (its trailing whitespace run, when chunks end with
        # "\n") may grow with the next chunk's leading whitespace: hold it back until then.
        carry = ""
        for chunk in iterable:
            pieces = self._pieces(carry + chunk)
            carry = ""
            if pieces and not pieces[-1][0]:
                carry = pieces.pop()[1]
            for piece in pieces:
                yield from self._encode_piece(piece)
        if carry:
            yield from self._encode_piece((False, carry))

    def decode(self, ids: list[int]) -> str:
        # Join the bytes first: one character's UTF-8 bytes may be spread over several tokens.
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")
