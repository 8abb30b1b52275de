"""Checks for inference.hf_generate: a model and tokenizer saved to a temporary directory,
loaded by the student with from_pretrained(path), generate the same ids and texts as the
judge's own `model.generate` on the same files.

The judge builds everything in memory and offline: a word-level `tokenizers` tokenizer over the
grader's synthetic language (its words and punctuation, plus <|endoftext|>, <pad> and <unk>),
wrapped in PreTrainedTokenizerFast either with no pad token (so pad = eos by the convention) or
with its own, and a tiny random GPT2LMHeadModel or LlamaForCausalLM (eager attention, float32)
whose end-of-sequence logit is raised so that some rows stop early. Both are written with
save_pretrained to the check's shared directory, the one the solution can read. Greedy prompts
are drawn until every choice of the truth wins by at least MARGIN (float rounding cannot flip a
token), at least one row stops early and at least one does not. Sampled ids equal the judge's
when both draw from torch's global generator seeded alike, on the same model and the same
thread count (the grader gives the judge and the solution the same).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from grader.compare import check
from grader.synthlang import SyntheticLanguage

SPECIALS = ["<|endoftext|>", "<pad>", "<unk>"]
EOS, PAD, UNK = 0, 1, 2
MARGIN = 1e-3  # a greedy choice closer than this to the runner-up is redrawn: rounding is ~1e-6
EOS_BOOST = 2.0  # the output row of EOS scaled up (untied heads): about half the rows stop within 10 tokens


@functools.cache
def language() -> SyntheticLanguage:
    return SyntheticLanguage(seed=0, vocab_size=160)


@functools.cache
def word_tokenizer() -> Tokenizer:
    """A WordLevel tokenizer over the language's words and punctuation (split as Whitespace does)."""
    pre = pre_tokenizers.Whitespace()
    text = language().text(60_000, seed=1).replace("\n", " ")
    pieces = sorted({piece for piece, _ in pre.pre_tokenize_str(text)})
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(SPECIALS + pieces)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    return tok


@functools.cache
def hf_tokenizer(own_pad: bool) -> Any:
    extra = {"pad_token": "<pad>"} if own_pad else {}
    return PreTrainedTokenizerFast(tokenizer_object=word_tokenizer(), eos_token="<|endoftext|>", unk_token="<unk>",
                                   **extra)


@dataclass(frozen=True)
class Setup:
    """A saved model and tokenizer: the model's kind and size, whether the tokenizer has its own
    pad token, and the weight seed."""

    kind: str = "gpt2"
    own_pad: bool = False
    layers: int = 2
    seed: int = 0

    def __str__(self) -> str:
        model = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[self.kind]
        pad = "its own pad token" if self.own_pad else "no pad token (pad = eos)"
        return f"{model} and a tokenizer with {pad}"


@functools.lru_cache(maxsize=8)
def judge_model(setup: Setup) -> Any:
    vocab = word_tokenizer().get_vocab_size()
    common = {"vocab_size": vocab, "initializer_range": 0.3, "bos_token_id": None, "eos_token_id": EOS,
              "pad_token_id": PAD if setup.own_pad else None, "attn_implementation": "eager"}
    with torch.random.fork_rng():
        torch.manual_seed(setup.seed)
        if setup.kind == "gpt2":
            model = GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=32, n_layer=setup.layers, n_head=4,
                                               tie_word_embeddings=False, **common))
        else:
            model = LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=setup.layers,
                                                 num_attention_heads=4, num_key_value_heads=2,
                                                 max_position_embeddings=64, **common))
    with torch.no_grad():
        model.lm_head.weight[EOS] *= EOS_BOOST
    return model.eval()


def save(setup: Setup, directory: Path) -> str:
    """Write the model and tokenizer of `setup` to `directory` with save_pretrained; its path."""
    judge_model(setup).save_pretrained(directory)
    hf_tokenizer(setup.own_pad).save_pretrained(directory)
    return str(directory)


@dataclass
class Sampling:
    temperature: float
    top_k: int
    seed: int

    def kwargs(self) -> dict[str, Any]:
        return {"do_sample": True, "temperature": self.temperature, "top_k": self.top_k, "seed": self.seed}


def judge_generate(path: str, prompts: list[str], n: int,
                   sampling: Sampling | None = None) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """The judge's own loading and generate on the saved files: new ids, texts, and the logits."""
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    batch = tok(prompts, return_tensors="pt", padding=True)
    options = {"do_sample": False}
    if sampling is not None:
        options = {"do_sample": True, "temperature": sampling.temperature, "top_k": sampling.top_k}
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(0 if sampling is None else sampling.seed)
        out = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             max_new_tokens=n, pad_token_id=tok.pad_token_id, output_logits=True,
                             return_dict_in_generate=True, **options)
    new = out.sequences[:, batch["input_ids"].shape[1]:]
    return new, tok.batch_decode(new, skip_special_tokens=True), torch.stack(out.logits, dim=1)


def prompt_from(words: list[str], k: int) -> str:
    return " ".join(words[:k])


def draw_prompts(rng: Any, path: str, lengths: list[int], n: int, stops: bool = True) -> list[str]:
    """Prompts of the given numbers of tokens (words and punctuation of the language), redrawn
    until greedy decoding is decided by at least MARGIN at every step of a row still running
    and, with `stops`, some row stops at EOS before the end while another runs to the end."""
    pre = pre_tokenizers.Whitespace()
    for _ in range(60):
        docs = language().documents(len(lengths), seed=int(rng.np.integers(1 << 30)))
        words = [[p for p, _ in pre.pre_tokenize_str(doc)] for doc in docs]
        if any(len(w) < k for w, k in zip(words, lengths)):
            continue
        prompts = [prompt_from(w, k) for w, k in zip(words, lengths)]
        new, _, logits = judge_generate(path, prompts, n)
        running = torch.cumsum((new == EOS).long(), dim=1) - (new == EOS).long() == 0  # no EOS before t
        top2 = logits.topk(2, dim=-1).values
        decided = bool(((top2[..., 0] - top2[..., 1] > MARGIN) | ~running).all())
        stopped = (new == EOS).any(dim=1)
        if decided and (not stops or (bool(stopped.any()) and not bool(stopped.all()))):
            return prompts
    raise AssertionError(f"no prompts of lengths {lengths} with decided greedy steps in 60 draws")


def describe(setup: Setup, prompts: list[str], n: int, sampling: Sampling | None = None) -> str:
    tok = hf_tokenizer(setup.own_pad)
    lengths = [len(tok(p)["input_ids"]) for p in prompts]
    how = "greedy" if sampling is None else (f"do_sample=True, temperature={sampling.temperature}, "
                                             f"top_k={sampling.top_k}, seed={sampling.seed}")
    return f"generate_text(path, {len(prompts)} prompts of {lengths} tokens, max_new_tokens={n}, {how}) with {setup}"


def expect_generation(expect: Any, setup: Setup, path: str, prompts: list[str], n: int,
                      sampling: Sampling | None = None) -> None:
    """new_ids equal the judge's generate exactly, then the texts."""
    kwargs = sampling.kwargs() if sampling is not None else {}

    def run(m: Any) -> Any:
        out = m.generate_text(path, prompts, n, **kwargs)
        check(isinstance(out, (tuple, list)) and len(out) == 2,
              f"generate_text must return a tuple (new_ids, texts), got {type(out).__name__}")
        return out

    new, texts, _ = judge_generate(path, prompts, n, sampling)
    what = describe(setup, prompts, n, sampling)
    got = run(expect.solution)
    expect.compare(got[0], new, lambda m: run(m)[0],
                   name=f"{what}: new_ids (B, L) vs the judge's model.generate without the prompt columns")
    expect.compare(list(got[1]), texts, lambda m: list(run(m)[1]),
                   name=f"{what}: texts vs tokenizer.batch_decode(new_ids, skip_special_tokens=True)")


def loaded_facts(module: Any, path: str) -> dict[str, Any]:
    model, tokenizer = module.load(path)
    return {"tokenizer.padding_side": tokenizer.padding_side, "tokenizer.pad_token_id": tokenizer.pad_token_id,
            "tokenizer.eos_token_id": tokenizer.eos_token_id, "model.training": model.training,
            "model.config.vocab_size": model.config.vocab_size}


@pytest.mark.points(2)
def test_load_prepares_model_and_tokenizer(expect, shared_dir):
    for setup, pad in ((Setup("gpt2", own_pad=False), EOS), (Setup("llama", own_pad=True), PAD)):
        path = save(setup, shared_dir / setup.kind)
        truth = {"tokenizer.padding_side": "left", "tokenizer.pad_token_id": pad, "tokenizer.eos_token_id": EOS,
                 "model.training": False, "model.config.vocab_size": word_tokenizer().get_vocab_size()}
        expect(lambda s, p=path: loaded_facts(s, p), truth=truth,
               name=f"load(path) of {setup}: padding side, pad and eos ids, eval mode, vocabulary")


@pytest.mark.points(3)
def test_greedy_batch_pad_is_eos(expect, rng, shared_dir):
    # GPT-2 (absolute positions) with pad = eos: padding side, the mask and the decoding all show
    setup = Setup("gpt2", own_pad=False)
    path = save(setup, shared_dir)
    prompts = draw_prompts(rng, path, [9, 3, 6, 12], n=10)
    expect_generation(expect, setup, path, prompts, 10)


@pytest.mark.points(2)
def test_greedy_batch_own_pad_token(expect, rng, shared_dir):
    # Llama with a pad token of its own, distinct from eos: finished rows are filled with it
    setup = Setup("llama", own_pad=True)
    path = save(setup, shared_dir)
    prompts = draw_prompts(rng, path, [4, 11, 7], n=8)
    expect_generation(expect, setup, path, prompts, 8)


def test_prompt_of_length_one(expect, rng, shared_dir):
    # a lone one-token prompt, then a one-token prompt batched with longer ones (10 pads)
    setup = Setup("gpt2", own_pad=False)
    path = save(setup, shared_dir)
    expect_generation(expect, setup, path, draw_prompts(rng, path, [1], n=6, stops=False), 6)
    expect_generation(expect, setup, path, draw_prompts(rng, path, [1, 11, 5], n=7), 7)


@pytest.mark.points(2)
def test_seeded_sampling(expect, rng, shared_dir):
    # the judge samples with torch.manual_seed(seed) just before generate, as the docstring says
    setup = Setup("llama", own_pad=False)
    path = save(setup, shared_dir)
    prompts = draw_prompts(rng, path, [5, 2, 8], n=9, stops=False)
    for sampling in (Sampling(temperature=0.7, top_k=20, seed=1234), Sampling(temperature=1.5, top_k=0, seed=7)):
        expect_generation(expect, setup, path, prompts, 9, sampling)


@pytest.mark.hidden
def test_hidden_fresh_model_prompts_and_seeds(expect, rng, shared_dir):
    """A model of 3 layers with weights drawn per seed, prompts and lengths the public checks do
    not use (one of a single token among them), greedy and then sampled with a temperature,
    top_k and seed drawn per seed; both tokenizer kinds."""
    seed = int(rng.np.integers(1, 1 << 30))
    for i, setup in enumerate((Setup("llama", own_pad=False, layers=3, seed=seed),
                               Setup("gpt2", own_pad=True, layers=3, seed=seed + 1))):
        path = save(setup, shared_dir / str(i))
        lengths = [int(k) for k in rng.np.integers(2, 14, int(rng.np.integers(2, 5)))]
        lengths[int(rng.np.integers(len(lengths)))] = 1
        n = int(rng.np.integers(5, 12))
        prompts = draw_prompts(rng, path, lengths, n=n, stops=False)
        expect_generation(expect, setup, path, prompts, n)
        sampling = Sampling(temperature=float(rng.np.choice([0.5, 0.9, 1.3])), top_k=int(rng.np.choice([0, 5, 30])),
                            seed=int(rng.np.integers(1 << 31)))
        expect_generation(expect, setup, path, prompts, n, sampling)
