"""Checks for pretraining.mlm_masking: exact parity with transformers' MLM collator, statistics, the loss.

Ground truth for the masking is transformers' `DataCollatorForLanguageModeling(tokenizer,
mlm_probability=p, seed=s)`: with a seed it draws from `torch.Generator().manual_seed(s)`, so
the student's `mask_tokens(..., seed=s)` must give the collator's batch token for token. The
tokenizer is a word-level `PreTrainedTokenizerFast` built in memory (no download); the
collator pads the rows itself (special_tokens_mask 1 on padding), and the student gets the
same padded batch.

The statistical checks hold for any correct implementation whatever the seed: every rate is
compared with its expectation within 6 binomial standard deviations (+ 1/n), so a correct
solution fails with probability about 1e-9 per rate, while the known mistakes miss by 10 or
more standard deviations. Each rate of a random replacement counts the 1 / vocab_size chance
that it draws [MASK] or the original token back.

Ground truth for the loss is `BertForMaskedLM(BertConfig(tiny, eager, float32))(input_ids,
labels=labels).loss`; F.cross_entropy over the flattened (B*T, V) logits is the second opinion.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader import probes
from grader.compare import assert_close, assert_equal, check, fail

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
FIRST_WORD = 5  # ids below are special tokens
VOCAB = 30
Z = 6.0  # standard deviations allowed for a rate
LOSS_TOL = {"atol": 1e-5, "rtol": 1e-5}


@functools.cache
def hf_tokenizer() -> Any:
    """A word-level fast tokenizer: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, words 5 .. VOCAB-1."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    vocab.update({f"w{i}": i for i in range(FIRST_WORD, VOCAB)})
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[UNK]")),
                                  pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    assert len(tok) == VOCAB and tok.mask_token_id == MASK and tok.pad_token_id == PAD
    return tok


def examples(rng: Any, lengths: list[int], special: bool = True) -> list[dict[str, list[int]]]:
    """Rows of words, each wrapped in [CLS] .. [SEP] when `special`, with their special_tokens_mask."""
    rows = []
    for n in lengths:
        words = rng.randint(FIRST_WORD, VOCAB, (n,)).tolist()
        if special:
            rows.append({"input_ids": [CLS, *words, SEP], "special_tokens_mask": [1] + [0] * n + [1]})
        else:
            rows.append({"input_ids": words, "special_tokens_mask": [0] * n})
    return rows


def hf_collate(rows: list[dict[str, list[int]]], p: float, seed: int, padding_side: str) -> dict[str, torch.Tensor]:
    """The padded batch, and what DataCollatorForLanguageModeling(seed=seed) makes of it."""
    from transformers import DataCollatorForLanguageModeling

    tok = hf_tokenizer()
    tok.padding_side = padding_side
    padded = tok.pad(rows, return_tensors="pt")
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=p, seed=seed, return_tensors="pt")
    out = collator(rows)
    return {"input_ids": padded["input_ids"], "special_tokens_mask": padded["special_tokens_mask"].bool(),
            "attention_mask": padded["attention_mask"], "masked": out["input_ids"], "labels": out["labels"]}


def new_seed(rng: Any) -> int:
    return int(rng.randint(0, 2**31 - 1, (1,)))


def call_mask(module: Any, ids: torch.Tensor, special: torch.Tensor | None, p: float | None, seed: int,
              vocab_size: int = VOCAB, mask_id: int = MASK) -> Any:
    """module.mask_tokens on fresh copies (a solution that works in place cannot spoil the judge's tensors)."""
    kwargs: dict[str, Any] = {"seed": seed}
    if special is not None:
        kwargs["special_tokens_mask"] = special.clone()
    if p is not None:
        kwargs["mlm_probability"] = p
    return module.mask_tokens(ids.clone(), mask_id, vocab_size, **kwargs)


def describe(ids: torch.Tensor, special: torch.Tensor | None, p: float | None, seed: int,
             vocab_size: int = VOCAB, mask_id: int = MASK) -> str:
    sp = "None" if special is None else f"bool {tuple(special.shape)}"
    pr = "" if p is None else f", mlm_probability={p}"
    return (f"mask_tokens(input_ids {tuple(ids.shape)}, mask_token_id={mask_id}, vocab_size={vocab_size}, "
            f"special_tokens_mask={sp}{pr}, seed={seed})")


def check_tensors(out: Any, ids: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    check(isinstance(out, (tuple, list)) and len(out) == 2,
          f"{what} must return a tuple (masked_input_ids, labels), got {type(out).__name__}")
    for i, name in enumerate(("masked_input_ids", "labels")):
        t = out[i]
        check(isinstance(t, torch.Tensor) and t.dtype == torch.long and tuple(t.shape) == tuple(ids.shape),
              f"{what}: {name} must be an int64 tensor of shape {tuple(ids.shape)}, got "
              + (f"{t.dtype} of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__))
    return out[0], out[1]


def first_difference(got: Any, ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor) -> str:
    """The first row where `got` differs from the collator's batch, written out ('' if none or malformed)."""
    ok = (isinstance(got, (tuple, list)) and len(got) == 2
          and all(isinstance(t, torch.Tensor) and t.shape == ids.shape for t in got))
    if not ok:
        return ""
    rows = ((got[0] != masked) | (got[1] != labels)).any(dim=1).nonzero()
    if len(rows) == 0:
        return ""
    b = int(rows[0])
    return (f"; the first row that differs is b = {b} (ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]):\n"
            f"  input_ids[b]                 = {ids[b].tolist()}\n"
            f"  expected masked_input_ids[b] = {masked[b].tolist()}\n"
            f"  got      masked_input_ids[b] = {got[0][b].tolist()}\n"
            f"  expected labels[b]           = {labels[b].tolist()}\n"
            f"  got      labels[b]           = {got[1][b].tolist()}\n"
            "  over the whole batch")


def assert_rates(what: str, rates: list[tuple[str, int, int, float]], got: Any, known: Any) -> None:
    """Each (label, count, n, p): count / n within Z binomial standard deviations (+ 1/n) of p."""
    lines, bad = [], False
    width = max(len(label) for label, *_ in rates)
    for label, count, n, p in rates:
        bound = Z * math.sqrt(p * (1.0 - p) / n) + 1.0 / n
        off = abs(count / n - p) > bound
        bad |= off
        lines.append(f"  {label.ljust(width)}: {count / n:.4f} ({count} of {n}), expected {p:.4f} +- {bound:.4f}"
                     + ("   <- outside" if off else ""))
    if bad:
        fail(f"{what}:\n" + "\n".join(lines) + f"\n  (+- is {Z:g} binomial standard deviations + 1/n: a correct "
             "solution lands inside whatever the seed)", got, known)


# --- exact: the same seeded draws as transformers' collator -----------------------------------


@pytest.mark.points(3)
def test_matches_transformers_collator(solution, rng, mistakes):
    cases = [
        # (lengths of words per row, special tokens?, mlm_probability, padding side, what)
        ([0, 7, 13, 20], True, 0.15, "right", "[CLS] words [SEP], right padding; row 0 has no word at all"),
        ([3, 11, 16], True, 0.3, "left", "[CLS] words [SEP], left padding"),
        ([1, 1, 1, 1, 1, 1], False, 0.5, "right", "T = 1, no special token, special_tokens_mask=None"),
        ([37, 37, 37], False, None, "right", "T = 37, no special token, default mlm_probability"),
        ([9, 4], True, 1.0, "right", "mlm_probability=1.0: every word is selected"),
    ]
    for lengths, special, p, side, what in cases:
        seed = new_seed(rng)
        batch = hf_collate(examples(rng, lengths, special), 0.15 if p is None else p, seed, side)
        ids = batch["input_ids"]
        sp = batch["special_tokens_mask"] if special else None
        got = call_mask(solution, ids, sp, p, seed)
        name = (f"{describe(ids, sp, p, seed)} [{what}] vs DataCollatorForLanguageModeling(tokenizer, "
                f"mlm_probability={0.15 if p is None else p}, seed={seed}) (item [0] is masked_input_ids, item [1] "
                f"labels){first_difference(got, ids, batch['masked'], batch['labels'])}")
        assert_equal(got, (batch["masked"], batch["labels"]), name=name,
                     mistakes=mistakes(lambda m, ids=ids, sp=sp, p=p, seed=seed: call_mask(m, ids, sp, p, seed)))


# --- exact properties that hold for every draw ----------------------------------------------


def padded_batch(rng: Any, rows: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] words [SEP] then right padding, words lengths 0 .. width-2: about half the positions special."""
    ids = torch.full((rows, width), PAD)
    special = torch.ones(rows, width, dtype=torch.bool)
    lengths = rng.randint(0, width - 1, (rows,))
    for b, n in enumerate(lengths.tolist()):
        ids[b, 0] = CLS
        ids[b, 1:n + 1] = rng.randint(FIRST_WORD, VOCAB, (n,))
        ids[b, n + 1] = SEP
        special[b, 1:n + 1] = False
    return ids, special


@pytest.mark.points(2)
def test_labels_and_special_tokens(solution, rng, mistakes):
    ids, special = padded_batch(rng, 64, 50)
    seed = new_seed(rng)
    what = describe(ids, special, 0.15, seed) + " ([CLS] words [SEP] + right padding, special_tokens_mask True on those)"
    got = call_mask(solution, ids, special, 0.15, seed)
    masked, labels = check_tensors(got, ids, what)
    known = mistakes(lambda m: call_mask(m, ids, special, 0.15, seed))

    def mutant_out(i: int) -> Any:
        return mistakes(lambda m: call_mask(m, ids, special, 0.15, seed)[i])

    n_labelled = int((labels[special] != -100).sum())
    n_changed = int((masked[special] != ids[special]).sum())
    if n_labelled or n_changed:
        fail(f"{what}: of the {int(special.sum())} special positions, {n_labelled} have labels != -100 and {n_changed} "
             "had their token changed; special tokens are never selected, so their labels are -100 and their tokens "
             "stay", got, known)
    # a label is either -100 or the ORIGINAL token at that position, never [MASK] or a random word
    assert_equal(labels, torch.where(labels != -100, ids, torch.full_like(ids, -100)),
                 name=f"{what}: labels (wherever a label is not -100 it must be the ORIGINAL token input_ids[b, t])",
                 mistakes=mutant_out(1))
    # a position that is not selected keeps its token
    kept = torch.where(labels == -100, ids, masked)
    assert_equal(masked, kept, name=f"{what}: masked_input_ids (wherever labels == -100 the token must be "
                                    "input_ids[b, t], unchanged: only selected positions are corrupted)",
                 mistakes=mutant_out(0))
    # and only about mlm_probability of the words are selected: not every position has a label
    words = ~special
    assert_rates(f"{what}: the fraction of the non-special positions selected (labels != -100; -100 at every "
                 "position that is not selected)",
                 [("selected", int((labels[words] != -100).sum()), int(words.sum()), 0.15)],
                 got, known)


# --- statistics over many draws -------------------------------------------------------------


@pytest.mark.points(2)
def test_selection_rate(solution, rng, mistakes):
    for p in (0.15, 0.4):
        ids, special = padded_batch(rng, 256, 128)
        seed = new_seed(rng)
        what = describe(ids, special, p, seed) + " (about half the positions special)"
        got = call_mask(solution, ids, special, p, seed)
        masked, labels = check_tensors(got, ids, what)
        known = mistakes(lambda m, ids=ids, special=special, p=p, seed=seed: call_mask(m, ids, special, p, seed))
        selected = labels != -100
        n_bad = int((selected & special).sum())
        if n_bad:
            fail(f"{what}: {n_bad} of the {int(special.sum())} special positions have labels != -100; special tokens "
                 "are never selected (their selection probability is 0)", got, known)
        words = ~special
        assert_rates(f"{what}: the fraction of the non-special positions selected (labels != -100)",
                     [("selected", int(selected[words].sum()), int(words.sum()), p)], got, known)


@pytest.mark.points(2)
def test_80_10_10_split(solution, rng, mistakes):
    ids = rng.randint(FIRST_WORD, VOCAB, (256, 256))
    seed = new_seed(rng)
    what = describe(ids, None, 0.15, seed) + f" (words {FIRST_WORD} .. {VOCAB - 1}, no special token)"
    got = call_mask(solution, ids, None, 0.15, seed)
    masked, labels = check_tensors(got, ids, what)
    selected = labels != -100
    n = int(selected.sum())
    check(n > 0, f"{what}: no position was selected (every label is -100)")
    out, orig = masked[selected], ids[selected]
    is_mask = out == MASK
    is_orig = (out == orig) & ~is_mask
    # a random word is [MASK] or the original token again with chance 1/V each
    r = 0.1 / VOCAB
    assert_rates(f"{what}: what became of the selected positions (labels != -100); 80% [MASK], 10% a random id "
                 f"uniform over all {VOCAB} (possibly [MASK] or the original itself), 10% unchanged give",
                 [(f"[MASK] (id {MASK})", int(is_mask.sum()), n, 0.8 + r),
                  ("the original token", int(is_orig.sum()), n, 0.1 + r),
                  ("another id (random word)", int((~is_mask & ~is_orig).sum()), n, 0.1 - 2 * r)],
                 got, mistakes(lambda m: call_mask(m, ids, None, 0.15, seed)))


def test_random_words_uniform(solution, rng, mistakes):
    # every position the same word and every position selected: what comes out is [MASK] w.p.
    # 0.8, the word itself w.p. 0.1, and else a random word uniform over ALL V ids
    vocab, mask_id, word = 10, 4, 7
    ids = torch.full((512, 512), word)
    seed = new_seed(rng)
    what = describe(ids, None, 1.0, seed, vocab, mask_id) + f" (every input token is {word})"
    got = call_mask(solution, ids, None, 1.0, seed, vocab, mask_id)
    masked, _ = check_tensors(got, ids, what)
    n = masked.numel()
    known = mistakes(lambda m: call_mask(m, ids, None, 1.0, seed, vocab, mask_id))
    outside = masked[(masked < 0) | (masked >= vocab)]
    if len(outside):
        fail(f"{what}: masked_input_ids holds ids outside [0, vocab_size={vocab}), e.g. {int(outside[0])}; random "
             f"words are torch.randint(vocab_size, ...), ids 0 .. {vocab - 1}", got, known)
    counts = torch.bincount(masked.reshape(-1), minlength=vocab)
    rates = []
    for t in range(vocab):
        role = " [MASK]" if t == mask_id else " the original" if t == word else ""
        p = 0.1 / vocab + (0.8 if t == mask_id else 0.1 if t == word else 0.0)
        rates.append((f"id {t}{role}", int(counts[t]), n, p))
    assert_rates(f"{what}: the fraction of positions holding each id; 80% [MASK], 10% unchanged and 10% a random "
                 f"id uniform over all {vocab} ids 0 .. {vocab - 1} (special ids, [MASK] and the original included) give",
                 rates, got, known)


def test_input_not_modified(solution, rng, mistakes):
    ids, special = padded_batch(rng, 8, 20)
    seed = new_seed(rng)
    what = describe(ids, special, 0.5, seed)

    def after(fn: Any) -> list[Any]:
        # the arguments as the call left them, in the process that made the call
        res = probes.call_inplace(fn, [ids.clone(), MASK, VOCAB, special.clone()], {"mlm_probability": 0.5, "seed": seed})
        return [res["args"][0], res["args"][3]]

    assert_equal(after(solution.mask_tokens), [ids, special],
                 name=f"[input_ids, special_tokens_mask] after {what} (the caller's tensors must not change: "
                      "write the [MASK] and random words into a clone)",
                 mistakes=mistakes(lambda m: after(m.mask_tokens)))


# --- the MLM loss ---------------------------------------------------------------------------


@functools.cache
def bert() -> Any:
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(4321)
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, initializer_range=0.3, pad_token_id=PAD,
                        attn_implementation="eager")
    return BertForMaskedLM(config).float().eval()


def flat_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def check_loss(solution: Any, mistakes: Any, logits: torch.Tensor, labels: torch.Tensor, expected: Any,
               what: str, against: str) -> None:
    got = solution.mlm_loss(logits, labels)
    assert_close(got, expected, **LOSS_TOL, name=f"mlm_loss({what}) vs {against}",
                 mistakes=mistakes(lambda m: m.mlm_loss(logits, labels)))


@pytest.mark.points(2)
def test_loss_matches_bert(solution, rng, mistakes):
    model = bert()
    for lengths, p in (([4, 12, 9], 0.15), ([10, 10], 0.5)):
        batch = hf_collate(examples(rng, lengths), p, new_seed(rng), "right")
        labels = batch["labels"]
        if not bool((labels != -100).any()):  # make sure at least one position is scored
            labels[0, 1] = batch["input_ids"][0, 1]
        with torch.no_grad():
            out = model(batch["masked"], attention_mask=batch["attention_mask"], labels=labels)
        what = (f"BertForMaskedLM logits {tuple(out.logits.shape)}, labels from DataCollatorForLanguageModeling "
                f"(mlm_probability={p:g}, {int((labels != -100).sum())} selected positions)")
        check_loss(solution, mistakes, out.logits, labels, out.loss, what,
                   "BertForMaskedLM(input_ids, labels=labels).loss")
        check_loss(solution, mistakes, out.logits, labels, flat_ce(out.logits, labels), what,
                   "F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)) (no shift)")


def test_loss_edge_cases(solution, rng, mistakes):
    # one selected position, in the middle: a shifted loss would score the wrong logits
    logits = rng.randn(2, 6, 17, scale=3.0)
    labels = torch.full((2, 6), -100)
    labels[1, 3] = 11
    check_loss(solution, mistakes, logits, labels, flat_ce(logits, labels),
               "logits (2, 6, 17), a single selected position labels[1, 3] = 11",
               "-log softmax(logits[1, 3])[11]")
    # T = 1: every position is its own target
    logits = rng.randn(4, 1, 9, scale=2.0)
    labels = rng.randint(0, 9, (4, 1))
    labels[2, 0] = -100
    check_loss(solution, mistakes, logits, labels, flat_ce(logits, labels), "T = 1, three selected positions",
               "F.cross_entropy over the selected positions")
    # nothing selected: 0 / 0
    logits = rng.randn(2, 5, 9)
    check_loss(solution, mistakes, logits, torch.full((2, 5), -100), torch.tensor(float("nan")),
               "every label -100", "NaN (no selected position)")
    # bfloat16 logits: computed and returned in float32
    logits = (rng.randn(3, 8, 40, scale=6.0) + 100.0).to(torch.bfloat16)
    labels = rng.randint(0, 40, (3, 8))
    labels[:, ::2] = -100
    check_loss(solution, mistakes, logits, labels, flat_ce(logits, labels), "bfloat16 logits (3, 8, 40) near 100",
               "F.cross_entropy(logits.float(), ...) (a float32 loss)")
    # differentiable with respect to the logits
    logits = rng.randn(2, 7, 13, scale=2.0)
    labels = rng.randint(0, 13, (2, 7))
    labels[0, :4] = -100
    x = logits.clone().requires_grad_(True)
    flat_ce(x, labels).backward()
    res = probes.grad(solution.mlm_loss, [logits, labels])
    assert_close(res["input_grads"][0], x.grad, atol=1e-6, rtol=1e-5,
                 name="d mlm_loss / d logits (autograd through your loss) vs autograd of F.cross_entropy",
                 mistakes=mistakes(lambda m: probes.grad(m.mlm_loss, [logits, labels])["input_grads"][0]))
