"""A synthetic, English-like language whose entropy rate is known exactly.

The language is a stationary first-order Markov chain over a vocabulary of words (made of
syllables, a few with accented letters), proper nouns, punctuation, an emoji and a
document boundary. Word classes give it a grammar of sorts (determiners before nouns,
verbs after nouns, sentences ending in . ? or !). Rendering to text is deterministic and
invertible (`parse` recovers the tokens), so the text has exactly the entropy of the token
sequence:

    entropy per token  H = -sum_i pi_i sum_j P_ij log P_ij        (nats)
    entropy per byte   H / E[bytes per token]                     (renewal argument)

where pi is the chain's stationary distribution. Text is a sample of that stationary
chain: the first token is drawn from pi, so no prefix is special.

    lang = SyntheticLanguage(seed=0)
    text = lang.text(1 << 20, seed=1)          # about 1 MB, byte-identical for the seed
    lang.entropy_per_token, lang.entropy_per_byte   # nats

Checks use it for tokenizer training data and, later, to judge a trained model's loss
against the true floor. It depends on numpy only, so instructors' plugins can use it too.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

import numpy as np

EOS = "\n"  # a document boundary renders as a newline
SENTENCE_END = (".", "?", "!")
PUNCTUATION = (",", *SENTENCE_END)
EMOJI = "🙂"

_CONSONANTS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
               "ch", "sh", "th", "st", "br", "tr", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ou", "ee", "é", "ü"]
_CODAS = ["", "", "", "n", "s", "r", "l", "t", "nd", "st"]

# word class -> classes that may follow it (the chain's grammar)
_GRAMMAR = {
    "det": ["adj", "noun", "noun"],
    "adj": ["noun", "adj"],
    "noun": ["verb", "prep", ",", "end"],
    "name": ["verb", ",", "end"],
    "verb": ["det", "prep", "adv", "name", "end"],
    "adv": ["verb", ",", "end", "det"],
    "prep": ["det", "name"],
    ",": ["det", "prep", "adv", "name"],
    "end": ["start"],
    "emoji": ["end"],
}
_CLASS_SHARE = {"det": 0.03, "adj": 0.2, "noun": 0.35, "name": 0.07, "verb": 0.23, "adv": 0.07, "prep": 0.05}


@dataclass
class SyntheticLanguage:
    """The language for one seed: vocabulary, transition matrix and exact entropies."""

    seed: int = 0
    vocab_size: int = 400
    branching: int = 6
    zipf: float = 1.1
    tokens: list[str] = field(init=False)
    transition: np.ndarray = field(init=False, repr=False)
    stationary: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0x5E17])
        words, classes = self._vocabulary(rng)
        self.tokens = [EOS, *PUNCTUATION, EMOJI, *words]
        self.classes = ["eos", ",", "end", "end", "end", "emoji", *classes]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.transition = self._transitions(rng)
        self.stationary = self._stationary()
        self._successors = [np.flatnonzero(row) for row in self.transition]
        self._cumulative = [np.cumsum(row[s]).tolist() for row, s in zip(self.transition, self._successors)]
        for c in self._cumulative:
            c[-1] = 1.0  # guard against rounding leaving a sliver above the last edge

    # --- construction -------------------------------------------------------------------

    def _vocabulary(self, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        n_words = self.vocab_size - 6
        names = list(_CLASS_SHARE)
        counts = [max(2, int(round(_CLASS_SHARE[c] * n_words))) for c in names]
        counts[names.index("noun")] += n_words - sum(counts)
        seen: set[str] = set()
        words, classes = [], []
        for cls, count in zip(names, counts):
            made = 0
            while made < count:
                n_syll = 1 if cls in ("det", "prep") else int(rng.integers(1, 4))
                w = "".join(
                    str(rng.choice(_CONSONANTS)) + str(rng.choice(_VOWELS)) + str(rng.choice(_CODAS))
                    for _ in range(n_syll)
                )
                if cls == "name":
                    w = w[0].upper() + w[1:]
                if w.lower() in seen:
                    continue
                seen.add(w.lower())
                words.append(w)
                classes.append(cls)
                made += 1
        return words, classes

    def _transitions(self, rng: np.random.Generator) -> np.ndarray:
        n = len(self.tokens)
        by_class: dict[str, list[int]] = {}
        for i, c in enumerate(self.classes):
            by_class.setdefault(c, []).append(i)
        starts = by_class["det"] + by_class["name"] + by_class["adv"]
        eos, emoji = self.index[EOS], self.index[EMOJI]
        P = np.zeros((n, n))
        for i, cls in enumerate(self.classes):
            if cls == "eos":
                pool = starts
            elif cls == "end":
                # a sentence ends: start another, or (sometimes) end the document
                pool = starts
            else:
                pool = [j for nxt in _GRAMMAR[cls] for j in (by_class["end"] if nxt == "end" else by_class.get(nxt, []))]
            k = min(self.branching, len(set(pool)))
            succ = rng.choice(sorted(set(pool)), size=k, replace=False)
            weights = 1.0 / np.arange(1, k + 1) ** self.zipf
            P[i, succ] = weights / weights.sum()
            if cls == "end":
                P[i] *= 0.9
                P[i, eos] = 0.1
            if cls in ("noun", "verb"):
                P[i] *= 0.995
                P[i, emoji] += 0.005
        # every word must be reachable: give each unreached word a small edge from its class's parent
        reached = P.sum(axis=0) > 0
        for j in np.flatnonzero(~reached):
            parents = [i for i, c in enumerate(self.classes) if c in _parents(self.classes[j])]
            i = parents[int(rng.integers(len(parents)))]
            P[i] *= 0.97
            P[i, j] += 0.03
        return P / P.sum(axis=1, keepdims=True)

    def _stationary(self) -> np.ndarray:
        n = len(self.tokens)
        A = self.transition.T - np.eye(n)
        A[-1] = 1.0  # replace one equation by sum(pi) = 1
        b = np.zeros(n)
        b[-1] = 1.0
        pi = np.linalg.solve(A, b)
        if (pi < -1e-12).any() or not np.allclose(pi @ self.transition, pi, atol=1e-12):
            raise RuntimeError("the synthetic language's chain has no unique stationary distribution")
        return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()

    # --- exact quantities ---------------------------------------------------------------

    @property
    def entropy_per_token(self) -> float:
        """Entropy rate of the token sequence, in nats per token."""
        P = self.transition
        with np.errstate(divide="ignore", invalid="ignore"):
            h_rows = -np.where(P > 0, P * np.log(P), 0.0).sum(axis=1)
        return float(self.stationary @ h_rows)

    @property
    def bytes_per_token(self) -> float:
        """Expected number of UTF-8 bytes the text spends per token."""
        n = len(self.tokens)
        size = np.array([len(t.encode()) for t in self.tokens], dtype=np.float64)
        space = np.array([0.0 if t in PUNCTUATION or t == EOS else 1.0 for t in self.tokens])
        after_eos = np.zeros(n)
        after_eos[self.index[EOS]] = 1.0
        # a word costs its bytes plus a leading space, except right after a document boundary
        cost = size[None, :] + space[None, :] * (1.0 - after_eos[:, None])
        return float(self.stationary @ (self.transition * cost).sum(axis=1))

    @property
    def entropy_per_byte(self) -> float:
        """Entropy rate of the text, in nats per UTF-8 byte."""
        return self.entropy_per_token / self.bytes_per_token

    # --- sampling and rendering ---------------------------------------------------------

    def sample(self, n_tokens: int, seed: int = 0) -> np.ndarray:
        """`n_tokens` token ids of the stationary chain; the same seed gives the same ids."""
        rng = np.random.default_rng([self.seed, seed, 0x7E47])
        u = rng.random(n_tokens + 1).tolist()
        state = int(bisect.bisect_left(np.cumsum(self.stationary).tolist(), u[0]))
        state = min(state, len(self.tokens) - 1)
        out = [0] * n_tokens
        succ, cum = [s.tolist() for s in self._successors], self._cumulative
        bis = bisect.bisect_left
        for t in range(n_tokens):
            out[t] = state
            state = succ[state][bis(cum[state], u[t + 1])]
        return np.asarray(out, dtype=np.int64)

    def render(self, ids: np.ndarray | list[int]) -> str:
        """The text of a token sequence (deterministic and invertible)."""
        parts: list[str] = []
        tokens, classes = self.tokens, self.classes
        prev = "eos"
        for i in ids:
            tok, cls = tokens[int(i)], classes[int(i)]
            if cls in ("eos", ",", "end"):
                parts.append(tok)
            else:
                if prev in ("end", "eos"):
                    tok = tok[0].upper() + tok[1:]
                parts.append(tok if prev == "eos" else " " + tok)
            prev = cls
        return "".join(parts)

    def text(self, n_bytes: int, seed: int = 0) -> str:
        """About `n_bytes` bytes of text (a whole number of tokens, at most n_bytes + 64)."""
        n_tokens = int(n_bytes / self.bytes_per_token) + 1
        text = self.render(self.sample(n_tokens, seed))
        return text

    def documents(self, n_documents: int, seed: int = 0) -> list[str]:
        """Complete documents: the text between document boundaries."""
        docs: list[str] = []
        chunk = 0
        while len(docs) <= n_documents + 1:
            docs = self.text(int((n_documents + 2) * 400 * 2**chunk), seed).split(EOS)
            chunk += 1
        return [d for d in docs[1:-1] if d][:n_documents]

    def parse(self, text: str) -> list[int]:
        """Token ids from text made by `render` (its inverse)."""
        ids = []
        sentence_start = True
        lower = {t.lower(): i for i, t in enumerate(self.tokens)}
        for piece in re.findall(r"\n|[,.?!]|[^\s,.?!]+", text):
            if piece in self.index and (piece in PUNCTUATION or piece == EOS or not sentence_start):
                ids.append(self.index[piece])
            else:
                key = piece[0].lower() + piece[1:] if sentence_start else piece
                ids.append(self.index[key] if key in self.index else lower[piece.lower()])
            sentence_start = piece in SENTENCE_END or piece == EOS
        return ids


def _parents(cls: str) -> set[str]:
    return {p for p, nexts in _GRAMMAR.items() if cls in nexts or (cls in ("det", "name", "adv") and p == "end")}
