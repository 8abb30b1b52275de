"""Checks for pretraining.mlm_masking: exact parity with transformers' MLM collator, statistics, the loss.

Ground truth for the masking is transformers' `DataCollatorForLanguageModeling(tokenizer,
mlm_probability=p, seed=s)`: with a seed it draws from `torch.Generator().manual_seed(s)`, so
the student's `mask_tokens(..., seed=s)` must give the collator's batch token for token. The
tokenizer is a word-level `PreTrainedTokenizerFast` built in memory (no download); the
collator pads the rows itself (special_tokens_mask 1 on padding), and the student gets the
same padded batch.

The statistical checks hold for any correct implementation whatever the seed: a single rate
is held to its exact binomial bounds (`assert_rate`), a split over several outcomes to
Pearson's chi-square test (`assert_counts`), each at a false-failure rate of FALSE_FAILURE =
1e-9 per test (before: 6 binomial standard deviations + 1/n per rate, about 1e-9 each), while
the known mistakes miss by 10 or more standard deviations. Each rate of a random replacement
counts the 1 / vocab_size chance that it draws [MASK] or the original token back.

Ground truth for the loss is `BertForMaskedLM(BertConfig(tiny, eager, float32))(input_ids,
labels=labels).loss`; F.cross_entropy over the flattened (B*T, V) logits is the second opinion.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from grader.checks import assert_counts, assert_rate
from grader.compare import check, fail

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
FIRST_WORD = 5  # ids below are special tokens
VOCAB = 30
FALSE_FAILURE = 1e-9  # the chance that one statistical test fails a correct solution
LOSS_TOL = {"atol": 1e-5, "rtol": 1e-5}


@functools.cache
def hf_tokenizer(vocab_size: int = VOCAB, mask_id: int = MASK) -> Any:
    """A word-level fast tokenizer: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] `mask_id`, and a
    word on every other id below `vocab_size` (by default [MASK] 4, words 5 .. VOCAB-1)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"])}
    vocab["[MASK]"] = mask_id
    vocab.update({f"w{i}": i for i in range(SEP + 1, vocab_size) if i != mask_id})
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab, unk_token="[UNK]")),
                                  pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", mask_token="[MASK]")
    assert len(tok) == vocab_size and tok.mask_token_id == mask_id and tok.pad_token_id == PAD
    return tok


def examples(rng: Any, lengths: list[int], special: bool = True,
             word_ids: tuple[int, int] = (FIRST_WORD, VOCAB)) -> list[dict[str, list[int]]]:
    """Rows of words (ids in [word_ids[0], word_ids[1])), each wrapped in [CLS] .. [SEP] when
    `special`, with their special_tokens_mask."""
    rows = []
    for n in lengths:
        words = rng.randint(*word_ids, (n,)).tolist()
        if special:
            rows.append({"input_ids": [CLS, *words, SEP], "special_tokens_mask": [1] + [0] * n + [1]})
        else:
            rows.append({"input_ids": words, "special_tokens_mask": [0] * n})
    return rows


def hf_collate(rows: list[dict[str, list[int]]], p: float, seed: int, padding_side: str,
               tok: Any = None) -> dict[str, torch.Tensor]:
    """The padded batch, and what DataCollatorForLanguageModeling(seed=seed) makes of it."""
    from transformers import DataCollatorForLanguageModeling

    tok = tok or hf_tokenizer()
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


def first_difference(got: Any, ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor,
                     mask_id: int = MASK) -> str:
    """The first row where `got` differs from the collator's batch, written out ('' if none or malformed)."""
    ok = (isinstance(got, (tuple, list)) and len(got) == 2
          and all(isinstance(t, torch.Tensor) and t.shape == ids.shape for t in got))
    if not ok:
        return ""
    rows = ((got[0] != masked) | (got[1] != labels)).any(dim=1).nonzero()
    if len(rows) == 0:
        return ""
    b = int(rows[0])
    return (f"; the first row that differs is b = {b} (ids 0-3 are [PAD] [UNK] [CLS] [SEP], {mask_id} is [MASK]):\n"
            f"  input_ids[b]                 = {ids[b].tolist()}\n"
            f"  expected masked_input_ids[b] = {masked[b].tolist()}\n"
            f"  got      masked_input_ids[b] = {got[0][b].tolist()}\n"
            f"  expected labels[b]           = {labels[b].tolist()}\n"
            f"  got      labels[b]           = {got[1][b].tolist()}\n"
            "  over the whole batch")


def observed(labels: list[str], counts: list[int], n: int) -> str:
    """Every outcome's observed fraction, for the message of a test over several outcomes."""
    return "; observed: " + ", ".join(f"{label} {c / n:.4f} ({c} of {n})" for label, c in zip(labels, counts))


def expect_collator(expect: Any, batch: dict[str, torch.Tensor], special: bool, p: float | None, seed: int,
                    what: str, vocab_size: int = VOCAB, mask_id: int = MASK) -> None:
    """mask_tokens on the collator's padded batch must give the collator's (masked, labels)."""
    ids = batch["input_ids"]
    sp = batch["special_tokens_mask"] if special else None

    def call(m: Any) -> Any:
        return call_mask(m, ids, sp, p, seed, vocab_size, mask_id)

    got = call(expect.solution)
    expect.compare(got, (batch["masked"], batch["labels"]), call,
                   name=f"{describe(ids, sp, p, seed, vocab_size, mask_id)} [{what}] vs DataCollatorForLanguageModeling("
                        f"tokenizer, mlm_probability={0.15 if p is None else p}, seed={seed}) (item [0] is "
                        f"masked_input_ids, item [1] labels){first_difference(got, ids, batch['masked'], batch['labels'], mask_id)}")


# --- exact: the same seeded draws as transformers' collator -----------------------------------


@pytest.mark.points(3)
def test_matches_transformers_collator(expect, rng):
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
        expect_collator(expect, batch, special, p, seed, what)


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
def test_labels_and_special_tokens(expect, rng):
    ids, special = padded_batch(rng, 64, 50)
    seed = new_seed(rng)
    what = describe(ids, special, 0.15, seed) + " ([CLS] words [SEP] + right padding, special_tokens_mask True on those)"

    def call(m: Any) -> Any:
        return call_mask(m, ids, special, 0.15, seed)

    got = call(expect.solution)
    masked, labels = check_tensors(got, ids, what)
    known = expect.mistakes(call)
    n_labelled = int((labels[special] != -100).sum())
    n_changed = int((masked[special] != ids[special]).sum())
    if n_labelled or n_changed:
        fail(f"{what}: of the {int(special.sum())} special positions, {n_labelled} have labels != -100 and {n_changed} "
             "had their token changed; special tokens are never selected, so their labels are -100 and their tokens "
             "stay", got, known)
    # a label is either -100 or the ORIGINAL token at that position, never [MASK] or a random word
    expect.compare(labels, torch.where(labels != -100, ids, torch.full_like(ids, -100)), lambda m: call(m)[1],
                   name=f"{what}: labels (wherever a label is not -100 it must be the ORIGINAL token input_ids[b, t])")
    # a position that is not selected keeps its token
    expect.compare(masked, torch.where(labels == -100, ids, masked), lambda m: call(m)[0],
                   name=f"{what}: masked_input_ids (wherever labels == -100 the token must be input_ids[b, t], "
                        "unchanged: only selected positions are corrupted)")
    # and only about mlm_probability of the words are selected: not every position has a label
    words = ~special
    assert_rate(int((labels[words] != -100).sum()), int(words.sum()), 0.15,
                name=f"{what}: the non-special positions selected (labels != -100; -100 at every position that is "
                     "not selected)", false_failure=FALSE_FAILURE, actual=got, mistakes=known)


# --- statistics over many draws -------------------------------------------------------------


@pytest.mark.points(2)
def test_selection_rate(expect, rng):
    for p in (0.15, 0.4):
        ids, special = padded_batch(rng, 256, 128)
        seed = new_seed(rng)
        what = describe(ids, special, p, seed) + " (about half the positions special)"
        got = call_mask(expect.solution, ids, special, p, seed)
        masked, labels = check_tensors(got, ids, what)
        known = expect.mistakes(lambda m, ids=ids, special=special, p=p, seed=seed: call_mask(m, ids, special, p, seed))
        selected = labels != -100
        n_bad = int((selected & special).sum())
        if n_bad:
            fail(f"{what}: {n_bad} of the {int(special.sum())} special positions have labels != -100; special tokens "
                 "are never selected (their selection probability is 0)", got, known)
        words = ~special
        assert_rate(int(selected[words].sum()), int(words.sum()), p,
                    name=f"{what}: the non-special positions selected (labels != -100)", false_failure=FALSE_FAILURE,
                    actual=got, mistakes=known)


@pytest.mark.points(2)
def test_80_10_10_split(expect, rng):
    ids = rng.randint(FIRST_WORD, VOCAB, (256, 256))
    seed = new_seed(rng)
    what = describe(ids, None, 0.15, seed) + f" (words {FIRST_WORD} .. {VOCAB - 1}, no special token)"
    got = call_mask(expect.solution, ids, None, 0.15, seed)
    masked, labels = check_tensors(got, ids, what)
    selected = labels != -100
    n = int(selected.sum())
    check(n > 0, f"{what}: no position was selected (every label is -100)")
    out, orig = masked[selected], ids[selected]
    is_mask = out == MASK
    is_orig = (out == orig) & ~is_mask
    # a random word is [MASK] or the original token again with chance 1/V each
    r = 0.1 / VOCAB
    outcomes = [f"[MASK] (id {MASK})", "the original token", "another id (random word)"]
    counts = [int(is_mask.sum()), int(is_orig.sum()), int((~is_mask & ~is_orig).sum())]
    assert_counts(counts, [0.8 + r, 0.1 + r, 0.1 - 2 * r], labels=outcomes,
                  name=f"{what}: what became of the selected positions (labels != -100); 80% [MASK], 10% a random id "
                       f"uniform over all {VOCAB} (possibly [MASK] or the original itself), 10% unchanged give "
                       f"{0.8 + r:.4f}, {0.1 + r:.4f} and {0.1 - 2 * r:.4f}{observed(outcomes, counts, n)}",
                  false_failure=FALSE_FAILURE, actual=got,
                  mistakes=expect.mistakes(lambda m: call_mask(m, ids, None, 0.15, seed)))


def test_random_words_uniform(expect, rng):
    # every position the same word and every position selected: what comes out is [MASK] w.p.
    # 0.8, the word itself w.p. 0.1, and else a random word uniform over ALL V ids
    vocab, mask_id, word = 10, 4, 7
    ids = torch.full((512, 512), word)
    seed = new_seed(rng)
    what = describe(ids, None, 1.0, seed, vocab, mask_id) + f" (every input token is {word})"

    def call(m: Any) -> Any:
        return call_mask(m, ids, None, 1.0, seed, vocab, mask_id)

    got = call(expect.solution)
    masked, _ = check_tensors(got, ids, what)
    n = masked.numel()
    known = expect.mistakes(call)
    outside = masked[(masked < 0) | (masked >= vocab)]
    if len(outside):
        fail(f"{what}: masked_input_ids holds ids outside [0, vocab_size={vocab}), e.g. {int(outside[0])}; random "
             f"words are torch.randint(vocab_size, ...), ids 0 .. {vocab - 1}", got, known)
    counts = torch.bincount(masked.reshape(-1), minlength=vocab).tolist()
    ids_seen = [f"id {t}" + (" [MASK]" if t == mask_id else " the original" if t == word else "") for t in range(vocab)]
    probs = [0.1 / vocab + (0.8 if t == mask_id else 0.1 if t == word else 0.0) for t in range(vocab)]
    assert_counts(counts, probs, labels=ids_seen,
                  name=f"{what}: the ids in masked_input_ids; 80% [MASK], 10% unchanged and 10% a random id uniform "
                       f"over all {vocab} ids 0 .. {vocab - 1} (special ids, [MASK] and the original included) give "
                       f"{probs[mask_id]:.2f} [MASK], {probs[word]:.2f} the original and {probs[0]:.2f} each other id"
                       f"{observed(ids_seen, counts, n)}",
                  false_failure=FALSE_FAILURE, actual=got, mistakes=known)


def test_input_not_modified(expect, rng):
    ids, special = padded_batch(rng, 8, 20)
    seed = new_seed(rng)
    expect.in_place(lambda s: s.mask_tokens, [ids, MASK, VOCAB, special], {"mlm_probability": 0.5, "seed": seed},
                    name=f"{describe(ids, special, 0.5, seed)} (argument 0 is input_ids, 3 special_tokens_mask: the "
                         "caller's tensors must not change, write the [MASK] and random words into a clone)")


def test_seed_draws_from_its_own_generator(expect, rng):
    """With a seed, the draws come from torch.Generator().manual_seed(seed) alone: the same seed
    masks alike, another seed otherwise, and the global random state (which dropout and the
    data order draw from in the training loop) is neither reseeded nor advanced. Reseeding
    the global generator gives the collator's very draws, so only this check sees it."""
    ids, special = padded_batch(rng, 6, 24)
    expect.seeded(lambda s: s.mask_tokens, [ids, MASK, VOCAB, special], {"mlm_probability": 0.5}, generator="seed",
                  pass_seed=True, name=describe(ids, special, 0.5, "s"))


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


@pytest.mark.points(2)
def test_loss_matches_bert(expect, rng):
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
        for truth, against in ((out.loss, "BertForMaskedLM(input_ids, labels=labels).loss"),
                               (flat_ce(out.logits, labels),
                                "F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1)) (no shift)")):
            expect(lambda s, x=out.logits, y=labels: s.mlm_loss(x, y), truth=truth, **LOSS_TOL,
                   name=f"mlm_loss({what}) vs {against}")


def test_loss_edge_cases(expect, rng):
    # one selected position, in the middle: a shifted loss would score the wrong logits
    logits = rng.randn(2, 6, 17, scale=3.0)
    labels = torch.full((2, 6), -100)
    labels[1, 3] = 11
    expect(lambda s: s.mlm_loss(logits, labels), truth=flat_ce(logits, labels), **LOSS_TOL,
           name="mlm_loss(logits (2, 6, 17), a single selected position labels[1, 3] = 11) vs "
                "-log softmax(logits[1, 3])[11]")
    # T = 1: every position is its own target
    logits = rng.randn(4, 1, 9, scale=2.0)
    labels = rng.randint(0, 9, (4, 1))
    labels[2, 0] = -100
    expect(lambda s: s.mlm_loss(logits, labels), truth=flat_ce(logits, labels), **LOSS_TOL,
           name="mlm_loss(T = 1, three selected positions) vs F.cross_entropy over the selected positions")
    # nothing selected: 0 / 0
    logits = rng.randn(2, 5, 9)
    labels = torch.full((2, 5), -100)
    expect(lambda s: s.mlm_loss(logits, labels), truth=torch.tensor(float("nan")), **LOSS_TOL,
           name="mlm_loss(every label -100) vs NaN (no selected position)")
    # bfloat16 logits: computed and returned in float32
    logits = (rng.randn(3, 8, 40, scale=6.0) + 100.0).to(torch.bfloat16)
    labels = rng.randint(0, 40, (3, 8))
    labels[:, ::2] = -100
    expect(lambda s: s.mlm_loss(logits, labels), truth=flat_ce(logits, labels), **LOSS_TOL,
           name="mlm_loss(bfloat16 logits (3, 8, 40) near 100) vs F.cross_entropy(logits.float(), ...) (a float32 loss)")
    # differentiable with respect to the logits
    logits = rng.randn(2, 7, 13, scale=2.0)
    labels = rng.randint(0, 13, (2, 7))
    labels[0, :4] = -100
    expect.gradients(lambda s: s.mlm_loss, [logits, labels], truth=flat_ce, atol=1e-6, rtol=1e-5,
                     name="mlm_loss(logits (2, 7, 13), labels) under autograd (input 0 is the logits) vs "
                          "F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1))")


@pytest.mark.hidden
def test_hidden_other_vocabulary(expect, rng):
    """A vocabulary the public checks do not use: 47 ids with [MASK] the LAST id (46, not 4), so a
    solution that assumes [MASK] = 4 or a vocabulary of 30 fails; five rows of odd lengths with
    left padding, mlm_probability 0.27; and mlm_loss on float64 and float16 logits over that
    vocabulary, a batch of one row included (the loss is float32 either way)."""
    vocab, mask_id = 47, 46
    tok = hf_tokenizer(vocab, mask_id)
    seed = new_seed(rng)
    batch = hf_collate(examples(rng, [5, 1, 17, 0, 9], word_ids=(SEP + 1, mask_id)), 0.27, seed, "left", tok)
    expect_collator(expect, batch, True, 0.27, seed, "47 ids, [MASK] = 46, left padding", vocab, mask_id)
    logits = rng.randn(1, 11, vocab, dtype=torch.float64, scale=3.0)
    labels = rng.randint(0, vocab, (1, 11))
    labels[0, ::3] = -100
    expect(lambda s: s.mlm_loss(logits, labels), truth=flat_ce(logits, labels), **LOSS_TOL,
           name="mlm_loss(float64 logits (1, 11, 47)) vs F.cross_entropy(logits.float(), ...) (a float32 loss)")
    half = (rng.randn(5, 7, vocab, scale=5.0) + 500.0).to(torch.float16)
    labels = batch["labels"][:, :7].clone()
    labels[0, 0] = 3  # at least one selected position, whatever the draw
    expect(lambda s: s.mlm_loss(half, labels), truth=flat_ce(half, labels), **LOSS_TOL,
           name="mlm_loss(float16 logits (5, 7, 47) near 500, labels from the collator) vs "
                "F.cross_entropy(logits.float(), ...) (a float32 loss)")
