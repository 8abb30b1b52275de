"""Checks for inference.beam_search: transformers' generate, and a brute-force search.

The model is a tiny GPT2LMHeadModel with random weights (eager attention, float32, untied
output layer, dropout 0) whose EOS logit gets a constant added (through ln_f's bias), so
that sequences do end before max_new_tokens. It is not data, so the student's function gets
one built in its own process from the same config and state dict by a `probes.run_program`
program; the judge keeps its own copy.

Ground truth:
- `model.generate(prompt, num_beams=K, do_sample=False, max_new_tokens=T, length_penalty=lp,
  early_stopping=es, num_return_sequences=n, return_dict_in_generate=True,
  output_scores=True)`: its `sequences` (the generated part, cut where `beam_indices`
  ends) and `sequences_scores`;
- brute force: on a vocabulary of 4 and T = 3, every possible generated sequence (ended by EOS
  or by the length limit) scored sum(log-probs) / len ** lp, the best n. With
  num_beams >= V * (V - 1) ** (T - 1) no candidate is ever pruned, and with
  early_stopping="never" (or False with lp <= 0) the stopping test is exact, so beam search
  must return exactly the n best sequences of all.

Near-ties would let float rounding decide (the student recomputes whole sequences, generate
uses its KV cache): the judge replays the stated algorithm on its own copy of the model and
measures the smallest gap between two values the algorithm compares (the 2K + 1 best
candidates of each step, the finished pool, the stopping test). A model or prompt whose gap
is below GAP, or whose replay disagrees with generate, is replaced by another draw, so
every verdict holds for any correct implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from grader import probes
from grader.checks import one_torch_thread
from grader.compare import check

# Scores: float32 sums of up to ten log-probs, recomputed by the student without a cache.
TOL = {"atol": 1e-4, "rtol": 1e-4}
GAP = 1e-4  # the smallest gap between two compared values that the checks allow


# --- the model -------------------------------------------------------------------------------


def config(vocab: int, eos: int, std: float) -> dict[str, Any]:
    return {"vocab_size": vocab, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2, "resid_pdrop": 0.0,
            "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": std, "tie_word_embeddings": False,
            "attn_implementation": "eager", "bos_token_id": eos, "eos_token_id": eos}


class Case:
    """A tiny GPT-2 (config and weights) and a prompt; `model` is the judge's copy."""

    def __init__(self, rng: Any, vocab: int, eos: int, prompt_len: int, std: float = 0.8, eos_boost: float = 1.0):
        self.vocab, self.eos = vocab, eos
        self.config = config(vocab, eos, std)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.randint(0, 2**31, (1,))))
            model = GPT2LMHeadModel(GPT2Config.from_dict(self.config))
        with torch.no_grad():  # a constant on the EOS logit: ln_f's bias along one axis, read by lm_head's EOS row
            model.transformer.ln_f.bias.zero_()
            model.transformer.ln_f.bias[0] = 1.0
            model.lm_head.weight[eos, 0] = eos_boost
        self.model = model.float().eval()
        self.state_dict = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.prompt = rng.randint(0, vocab, (prompt_len,))

    def __str__(self) -> str:
        return (f"a GPT2LMHeadModel (vocab {self.vocab}, eos_token_id={self.eos}, random weights), prompt "
                f"{self.prompt.tolist()}")


def student_run(module: Any, case: Case, kwargs: dict[str, Any]) -> Any:
    """module.beam_search(model, prompt, **kwargs), the model built in the module's process,
    which runs the call on one torch thread (its setting is put back afterwards)."""
    program = [
        ["import", "transformers"],
        ["getattr", 0, "GPT2Config"],
        ["method", 1, "from_dict", [["val", case.config]]],
        ["method", 0, "GPT2LMHeadModel", [["reg", 2]]],
        ["method", 3, "load_state_dict", [["val", case.state_dict]]],
        ["method", 3, "eval", []],
        ["import", "torch"],
        ["method", 6, "get_num_threads", []],
        ["method", 6, "set_num_threads", [["val", 1]]],
        ["call", "beam_search", [["reg", 3], ["val", case.prompt]], {k: ["val", v] for k, v in kwargs.items()}],
        ["method", 6, "set_num_threads", [["reg", 7]]],
    ]
    with torch.random.fork_rng(devices=[]):  # building a model draws its initial weights from the global RNG
        return probes.run_program(module, program, [9])[0]


@pytest.fixture(autouse=True)
def _judge_on_one_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def hf_generate(case: Case, kw: dict[str, Any]) -> list[tuple[list[int], float]]:
    with torch.no_grad():
        out = case.model.generate(
            case.prompt[None], attention_mask=torch.ones(1, len(case.prompt), dtype=torch.long),
            num_beams=kw["num_beams"], do_sample=False, max_new_tokens=kw["max_new_tokens"],
            length_penalty=kw["length_penalty"], early_stopping=kw["early_stopping"],
            num_return_sequences=kw["num_return_sequences"], eos_token_id=case.eos, pad_token_id=case.eos,
            return_dict_in_generate=True, output_scores=True)
    p = len(case.prompt)
    result = []
    for i in range(kw["num_return_sequences"]):
        n = int((out.beam_indices[i] != -1).sum())
        result.append((out.sequences[i, p:p + n].tolist(), float(out.sequences_scores[i])))
    return result


# --- the judge's replay: the stated algorithm, measuring how close its decisions are ----------


def _gaps(values: list[float]) -> float:
    ordered = sorted(values, reverse=True)
    return min((a - b for a, b in zip(ordered, ordered[1:])), default=math.inf)


def replay(case: Case, kw: dict[str, Any], spares_finish: bool = False) -> tuple[list[tuple[list[int], float]], float]:
    """The exercise's algorithm on the judge's model; returns its hypotheses and the smallest
    gap between two values it compares. With `spares_finish`, an EOS ranked num_beams or below
    finishes too (what the rule "only the num_beams best may finish" excludes)."""
    k, t_max, lp, es = kw["num_beams"], kw["max_new_tokens"], kw["length_penalty"], kw["early_stopping"]
    prompt = case.prompt.tolist()
    running: list[tuple[list[int], float]] = [([], 0.0)]
    finished: list[tuple[list[int], float]] = []
    gap = math.inf
    for step in range(t_max):
        ids = torch.tensor([prompt + tokens for tokens, _ in running])
        with torch.no_grad():
            log_probs = F.log_softmax(case.model(ids).logits[:, -1, :].float(), dim=-1)
        scores = (torch.tensor([s for _, s in running])[:, None] + log_probs).reshape(-1)
        order = scores.argsort(descending=True).tolist()
        m = min(2 * k, len(order))
        gap = min(gap, _gaps([float(scores[i]) for i in order[:m + 1]]))
        length, last = step + 1, step + 1 == t_max
        nxt: list[tuple[list[int], float]] = []
        for rank, index in enumerate(order[:m]):
            beam, token = divmod(index, case.vocab)
            tokens, score = running[beam][0] + [token], float(scores[index])
            if token == case.eos or last:
                if rank < k or spares_finish:
                    finished.append((tokens, score / length**lp))
            elif len(nxt) < k:
                nxt.append((tokens, score))
        finished.sort(key=lambda h: h[1], reverse=True)
        gap = min(gap, _gaps([s for _, s in finished[:k + 1]]))
        finished = finished[:k]
        running = nxt
        if last or not running:
            break
        if len(finished) == k:
            if es is True:
                break
            horizon = t_max if es == "never" and lp > 0 else length
            bound = running[0][1] / horizon**lp
            gap = min(gap, abs(bound - finished[-1][1]))
            if bound <= finished[-1][1]:
                break
    return finished[:kw["num_return_sequences"]], gap


def clear_replay(case: Case, kw: dict[str, Any]) -> list[tuple[list[int], float]] | None:
    """The replay's hypotheses, if no decision on the way is closer than GAP."""
    mine, gap = replay(case, kw)
    return mine if gap >= GAP else None


def brute_force(case: Case, max_new_tokens: int, length_penalty: float) -> list[tuple[list[int], float]]:
    """Every generated sequence (ended by EOS or by the length limit), best first."""
    prompt = case.prompt.tolist()
    done: list[tuple[list[int], float]] = []
    frontier: list[tuple[list[int], float]] = [([], 0.0)]
    for length in range(1, max_new_tokens + 1):
        ids = torch.tensor([prompt + tokens for tokens, _ in frontier])
        with torch.no_grad():
            log_probs = F.log_softmax(case.model(ids).logits[:, -1, :].float(), dim=-1).double()
        grown = []
        for (tokens, total), row in zip(frontier, log_probs):
            for token in range(case.vocab):
                item = (tokens + [token], total + float(row[token]))
                if token == case.eos or length == max_new_tokens:
                    done.append((item[0], item[1] / length**length_penalty))
                else:
                    grown.append(item)
        frontier = grown
    return sorted(done, key=lambda h: h[1], reverse=True)


# --- comparing -------------------------------------------------------------------------------


def describe(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kw.items())


def shape_problem(got: Any, n: int) -> str | None:
    if not isinstance(got, (list, tuple)):
        return f"must return a list of (tokens, score) pairs, got a {type(got).__name__}"
    if len(got) != n:
        return f"must return num_return_sequences={n} hypotheses, got {len(got)}"
    for i, h in enumerate(got):
        if not (isinstance(h, (list, tuple)) and len(h) == 2 and isinstance(h[0], (list, tuple))
                and all(isinstance(t, int) and not isinstance(t, bool) for t in h[0])
                and isinstance(h[1], (int, float)) and not isinstance(h[1], bool)):
            return f"item {i} must be a pair (list of int token ids, float score), got {str(h)[:120]}"
    return None


def expect_hypotheses(expect: Any, case: Case, kw: dict[str, Any], truth: list[tuple[list[int], float]],
                      against: str) -> None:
    what = f"beam_search({case}, {describe(kw)})"
    got = student_run(expect.solution, case, kw)
    problem = shape_problem(got, kw["num_return_sequences"])
    check(problem is None, f"{what} {problem}")

    def tokens(m: Any) -> Any:
        out = student_run(m, case, kw)
        return [list(h[0]) for h in out] if shape_problem(out, kw["num_return_sequences"]) is None else out

    def scores(m: Any) -> Any:
        out = student_run(m, case, kw)
        return [float(h[1]) for h in out] if shape_problem(out, kw["num_return_sequences"]) is None else out

    expect.compare([list(h[0]) for h in got], [t for t, _ in truth], tokens,
                   name=f"{what}: the generated tokens of each hypothesis, best first, vs {against}: "
                        f"{[t for t, _ in truth]} (you returned {[list(h[0]) for h in got]})")
    expect.compare([float(h[1]) for h in got], [s for _, s in truth], scores, **TOL,
                   name=f"{what}: the scores sum(log-probs) / len ** length_penalty, best first, vs {against}")


def find_case(rng: Any, vocab: int, eos: int, prompt_len: int, kws: list[dict[str, Any]], want: Any = None,
              **model: Any) -> tuple[Case, list[list[tuple[list[int], float]]]]:
    """A model and prompt on which every setting in `kws` is decided clear of ties, with
    generate agreeing with the replay (and `want(case, hypotheses)` holding, when given);
    redrawn until so. Returns generate's answers."""
    for attempt in range(60):
        case = Case(rng.child("attempt", attempt), vocab, eos, prompt_len, **model)
        replays = [clear_replay(case, kw) for kw in kws]
        if any(r is None for r in replays) or (want is not None and not want(case, replays)):
            continue
        truths = [hf_generate(case, kw) for kw in kws]
        if all([t for t, _ in r] == [t for t, _ in truth] for r, truth in zip(replays, truths)):  # type: ignore[union-attr]
            return case, truths
    raise RuntimeError("no model clear of near-ties was found")


def ends_with_eos(case: Case, hypotheses: list[Any]) -> bool:
    return any(t and t[-1] == case.eos for h in hypotheses for t, _ in h)


# --- checks ----------------------------------------------------------------------------------

BRUTE_VOCAB, BRUTE_STEPS = 4, 3
WIDE = BRUTE_VOCAB * (BRUTE_VOCAB - 1) ** (BRUTE_STEPS - 1)  # every candidate of every step fits in the beam


@pytest.mark.points(3)
def test_matches_exhaustive_search(expect, rng):
    settings = [(1.0, "never", 4), (2.0, "never", 5), (-1.0, "never", 3), (0.0, False, 4), (0.5, "never", 6)]
    for i, (lp, es, n) in enumerate(settings):
        for attempt in range(40):
            case = Case(rng.child(i, attempt), BRUTE_VOCAB, eos=i % BRUTE_VOCAB, prompt_len=2, std=1.0, eos_boost=0.5)
            ranked = brute_force(case, BRUTE_STEPS, lp)
            if _gaps([s for _, s in ranked[:n + 1]]) >= GAP and any(case.eos in t for t, _ in ranked[:n]):
                break
        else:
            raise RuntimeError("no model clear of near-ties was found")
        kw = {"num_beams": WIDE, "max_new_tokens": BRUTE_STEPS, "eos_token_id": case.eos, "length_penalty": lp,
              "early_stopping": es, "num_return_sequences": n}
        expect_hypotheses(expect, case, kw, ranked[:n],
                          f"the {n} best of all {len(ranked)} sequences of a vocabulary of {BRUTE_VOCAB} "
                          f"(brute force; num_beams={WIDE} never prunes)")


@pytest.mark.points(3)
def test_matches_transformers_generate(expect, rng):
    vocab, eos = 19, 5
    for i, (k, lp, es, n, t) in enumerate([(3, 1.0, False, 2, 7), (2, 2.0, "never", 2, 6), (4, -0.5, True, 3, 6),
                                           (3, 0.0, False, 1, 8)]):
        kw = {"num_beams": k, "max_new_tokens": t, "eos_token_id": eos, "length_penalty": lp, "early_stopping": es,
              "num_return_sequences": n}
        case, (truth,) = find_case(rng.child(i), vocab, eos, 3, [kw], want=ends_with_eos)
        expect_hypotheses(expect, case, kw, truth, "transformers' generate(do_sample=False)")


def differ(case: Case, hypotheses: list[Any]) -> bool:
    return [t for t, _ in hypotheses[0]] != [t for t, _ in hypotheses[1]]


@pytest.mark.points(2)
def test_early_stopping_conventions(expect, rng):
    """The three stopping rules, each against False on a model where they give different
    hypotheses: True stops once the pool is full, "never" bounds the running beams by
    max_new_tokens when length_penalty > 0."""
    vocab, eos = 16, 0
    for i, (other, lp) in enumerate(((True, 1.0), ("never", 2.0))):
        kws = [{"num_beams": 3, "max_new_tokens": 6, "eos_token_id": eos, "length_penalty": lp, "early_stopping": es,
                "num_return_sequences": 3} for es in (other, False)]
        case, truths = find_case(rng.child(i), vocab, eos, 2, kws, want=differ, eos_boost=3.0)
        for kw, truth in zip(kws, truths):
            expect_hypotheses(expect, case, kw, truth, "transformers' generate(do_sample=False)")


def test_edge_cases(expect, rng):
    vocab, eos = 10, 9
    cases = [
        # one new token: every candidate is finished by the length limit, the best num_beams stay
        ({"num_beams": 4, "max_new_tokens": 1, "length_penalty": 1.0, "early_stopping": False,
          "num_return_sequences": 4}, 1, 0.0),
        # EOS likely: hypotheses of one token (just EOS) compete with longer ones
        ({"num_beams": 2, "max_new_tokens": 5, "length_penalty": 1.0, "early_stopping": True,
          "num_return_sequences": 2}, 1, 3.0),
        # num_beams = V / 2: the 2 * num_beams candidates are the whole first step
        ({"num_beams": 5, "max_new_tokens": 4, "length_penalty": 0.7, "early_stopping": "never",
          "num_return_sequences": 5}, 4, 1.5),
    ]
    for i, (kw, prompt_len, boost) in enumerate(cases):
        kw = {"eos_token_id": eos, **kw}
        case, (truth,) = find_case(rng.child(i), vocab, eos, prompt_len, [kw], eos_boost=boost)
        expect_hypotheses(expect, case, kw, truth, "transformers' generate(do_sample=False)")
    # an EOS ranked between num_beams and 2 * num_beams - 1 is a spare: it never finishes,
    # on a model where letting it finish would change the answer
    # (a negative length penalty favours short hypotheses, so an early spare EOS would often win)
    kw = {"num_beams": 2, "max_new_tokens": 6, "eos_token_id": eos, "length_penalty": -1.0, "early_stopping": False,
          "num_return_sequences": 2}

    def spare_matters(case: Case, hypotheses: list[Any]) -> bool:
        spares, _ = replay(case, kw, spares_finish=True)
        return [t for t, _ in spares] != [t for t, _ in hypotheses[0]]

    case, (truth,) = find_case(rng.child("spare"), vocab, eos, 2, [kw], want=spare_matters, eos_boost=1.0)
    expect_hypotheses(expect, case, kw, truth, "transformers' generate(do_sample=False) (a model where an EOS "
                      "ranked num_beams or lower would win if it could finish)")


@pytest.mark.hidden
def test_hidden_fresh_sizes(expect, rng):
    """A vocabulary of 13 with EOS its last id, 5 beams, a prompt of 5 tokens, length
    penalties the public checks do not use, under each stopping rule."""
    vocab, eos = 13, 12
    kws = [{"num_beams": 5, "max_new_tokens": 7, "eos_token_id": eos, "length_penalty": lp, "early_stopping": es,
            "num_return_sequences": 3} for lp, es in ((1.3, False), (-0.7, "never"), (0.8, True))]
    case, truths = find_case(rng, vocab, eos, 5, kws, eos_boost=2.0)
    for kw, truth in zip(kws, truths):
        expect_hypotheses(expect, case, kw, truth, "transformers' generate(do_sample=False)")
