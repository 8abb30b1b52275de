"""Checks for alignment.grpo: the paper's formulas, written out, with TRL's conventions.

trl is not a dependency (it pulls datasets, pandas and pyarrow, and its GRPO advantages live
inside the Trainer), so the truth is the paper's formulas evaluated here token by token in
float64 (Shao et al. 2024, DeepSeekMath, section 4.1.1 and eq. 3), and TRL's GRPOTrainer
settles what the paper leaves open:

- Outcome supervision: completion o_i of a group of G gets reward r_i, and every token of o_i
  the advantage A_i = (r_i - mean(r)) / std(r) over ITS group. The paper does not say which
  std; TRL's `_generate_and_score_completions` computes, on rewards laid out prompt-major,
      mean = rewards.view(-1, G).mean(dim=1).repeat_interleave(G)
      std  = rewards.view(-1, G).std(dim=1).repeat_interleave(G)     (torch.std: unbiased)
      advantages = (rewards - mean) / (std + 1e-4)
  which is the formula with Bessel's correction and eps = 1e-4 added to the std; the checks
  evaluate it with Python's statistics.mean / statistics.stdev (unbiased) per group, and with
  TRL's tensor form above as a second opinion. An all-equal group has std 0 and advantage
  0 / 1e-4 = 0 exactly.
- The objective (eq. 3), with ratio_{i,t} = pi_theta / pi_theta_old at token t of o_i:
      J = 1/G sum_i 1/|o_i| sum_t [ min(ratio A_i, clip(ratio, 1 - eps, 1 + eps) A_i) - beta D_KL ]
      D_KL = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1          (eq. 4: k3, >= 0)
  and the loss is -J: per completion the mean over its own tokens, then the mean over
  completions (TRL's loss_type="grpo", which clamps a completion's token count to at least 1).
  Over several prompts the 1/G mean over a group and the mean over groups make one plain mean
  over all N = B * G completions.
- Verifiable rewards: completions of small arithmetic problems (a + b, a * b with the check's
  seeded numbers), written with known correctness: the reward of each is known by
  construction, not by re-running a parser.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import pytest
import torch

from grader.compare import check, raises

TOL = {"atol": 1e-5, "rtol": 1e-5}  # float32: a few ulps of values of order 1, with a margin of ten
TOL64 = {"atol": 1e-10, "rtol": 1e-10}
REWARD_TOL = {"atol": 1e-6, "rtol": 0.0}  # rewards are 0.0 or 1.0; an ulp of 1.0 is not a mistake


# --- the truths -----------------------------------------------------------------------------


def paper_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(r_i - mean) / (stdev + eps) per group of consecutive rewards, in float64 Python numbers."""
    values = rewards.double().tolist()
    out = []
    for g in range(0, len(values), group_size):
        group = values[g : g + group_size]
        m, s = statistics.mean(group), statistics.stdev(group)
        out.extend((r - m) / (s + eps) for r in group)
    return torch.tensor(out, dtype=torch.float64).to(rewards.dtype)


def trl_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """TRL GRPOTrainer's tensor form (eps 1e-4), in float64."""
    r = rewards.double()
    mean = r.view(-1, group_size).mean(dim=1).repeat_interleave(group_size)
    std = r.view(-1, group_size).std(dim=1).repeat_interleave(group_size)
    return ((r - mean) / (std + 1e-4)).to(rewards.dtype)


def paper_loss(logp, old_logp, ref_logp, adv, mask, clip_eps, beta):
    """-J of eq. 3, token by token: per completion the mean over its own tokens, then the mean."""
    per_completion = []
    for i in range(mask.shape[0]):
        terms = []
        for t in range(mask.shape[1]):
            if not mask[i, t]:
                continue
            lp, old, ref, a = float(logp[i, t]), float(old_logp[i, t]), float(ref_logp[i, t]), float(adv[i])
            ratio = math.exp(lp - old)
            surrogate = min(ratio * a, min(max(ratio, 1 - clip_eps), 1 + clip_eps) * a)
            kl = math.exp(ref - lp) - (ref - lp) - 1
            terms.append(-(surrogate - beta * kl))
        per_completion.append(sum(terms) / max(len(terms), 1))
    return torch.tensor(sum(per_completion) / len(per_completion), dtype=torch.float64).to(logp.dtype)


def autograd_loss(logp, old_logp, ref_logp, adv, mask, clip_eps, beta):
    """The same formula as torch ops; the constants detached, so only d loss / d logp is compared."""
    ratio = torch.exp(logp - old_logp.detach())
    a = adv.detach()[:, None]
    surrogate = torch.min(ratio * a, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * a)
    log_r = ref_logp.detach() - logp
    per_token = torch.where(mask, -(surrogate - beta * (torch.exp(log_r) - log_r - 1)), 0.0)
    return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def row_mask(lengths: list[int], steps: int) -> torch.Tensor:
    return torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]


def loss_batch(rng: Any, lengths: list[int], steps: int, dtype=torch.float32, spread: float = 0.4):
    """Log-probs with ratios from about 0.3 to 3 and a reference 0.3 nats away; moderate garbage at
    padding (exp stays finite); advantages of both signs."""
    n = len(lengths)
    mask = row_mask(lengths, steps)
    logp = rng.randn(n, steps, dtype=dtype, scale=0.5) - 2.0
    old_logp = logp + rng.randn(n, steps, dtype=dtype, scale=spread)
    ref_logp = logp + rng.randn(n, steps, dtype=dtype, scale=0.3)
    adv = rng.randn(n, dtype=dtype)

    def garbage(x: torch.Tensor) -> torch.Tensor:
        return torch.where(mask, x, rng.randn(n, steps, dtype=dtype, scale=3.0))

    return garbage(logp), garbage(old_logp), garbage(ref_logp), adv, mask


# --- group-normalised advantages ------------------------------------------------------------


@pytest.mark.points(3)
def test_group_advantages_match_the_formula(expect, rng):
    cases = [
        (rng.randn(12), 4, "rewards (12,) ~ N(0, 1), 3 groups of 4"),
        # binary rewards of a verifier: 2, 5 and 1 correct out of 7
        (torch.tensor([1, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0], dtype=torch.float32), 7,
         "0/1 rewards (21,), 3 groups of 7 with 2, 5 and 1 correct"),
        (rng.randn(32, scale=3.0) + 5.0, 16, "rewards (32,) ~ 5 + N(0, 9), 2 groups of 16"),
    ]
    for rewards, g, what in cases:
        for truth, against in ((paper_advantages(rewards, g), "(r - group mean) / (unbiased group std + 1e-4)"),
                               (trl_advantages(rewards, g), "TRL GRPOTrainer's view(-1, G) mean/std form")):
            expect(lambda s, r=rewards, g=g: s.group_advantages(r, g), truth=truth, **TOL,
                   name=f"group_advantages({what}, group_size={g}) vs {against}")
    rewards = rng.randn(6)
    expect(lambda s: s.group_advantages(rewards, 3, eps=0.5), truth=paper_advantages(rewards, 3, 0.5), **TOL,
           name="group_advantages(rewards (6,), group_size=3, eps=0.5) vs (r - group mean) / (unbiased group std + 0.5)")


@pytest.mark.points(2)
def test_group_advantages_edge_cases(expect, rng):
    # all-equal groups (every completion right, or every one wrong): std 0, advantage 0, not NaN;
    # dyadic values so the float32 mean is exact
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.75, 0.75, 0.75, 0.0, 1.0, 0.5])
    expect(lambda s: s.group_advantages(rewards, 3), truth=paper_advantages(rewards, 3), **TOL,
           name="group_advantages([1, 1, 1 | 0, 0, 0 | 0.75, 0.75, 0.75 | 0, 1, 0.5], group_size=3): the first three "
                "groups are all equal (std 0: advantage 0, not NaN)")
    # G = 2: the unbiased std of two rewards is |r1 - r2| / sqrt(2), so A = +-(1 / sqrt(2)) (nearly)
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, -1.0, 0.25, 0.5])
    expect(lambda s: s.group_advantages(rewards, 2), truth=paper_advantages(rewards, 2), **TOL,
           name="group_advantages([1, 0 | 0, 0 | 3, -1 | 0.25, 0.5], group_size=2) (unbiased std: +-0.7071, and 0 for "
                "the equal pair)")
    rewards64 = rng.randn(10, dtype=torch.float64)
    expect(lambda s: s.group_advantages(rewards64, 5), truth=paper_advantages(rewards64, 5), **TOL64,
           name="group_advantages(float64 rewards (10,), group_size=5) (float64 expected)")
    for bad, g, why in ((torch.ones(5), 1, "group_size=1: one sample has no unbiased std"),
                        (torch.ones(10), 4, "a length (10) that is not a multiple of group_size=4"),
                        (torch.ones(2, 4), 4, "2-d rewards (2, 4): rewards are (B * G,)")):
        check(raises(lambda b=bad, g=g: expect.solution.group_advantages(b, g)),
              f"group_advantages(rewards of shape {tuple(bad.shape)}, group_size={g}) must raise ValueError ({why})")


# --- the GRPO loss --------------------------------------------------------------------------


@pytest.mark.points(3)
def test_grpo_loss_matches_the_paper(expect, rng):
    # 2 prompts x 3 completions of 10, 4, 1, 7, 10 and 2 tokens: a token mean over the batch, or over
    # padding, weighs them differently
    logp, old_logp, ref_logp, adv, mask = loss_batch(rng, [10, 4, 1, 7, 10, 2], 10)
    what = ("grpo_loss(logp, old_logp, ref_logp (6, 10) float32, advantages (6,), mask with 10, 4, 1, 7, 10 and 2 "
            "valid tokens")
    for clip_eps, beta in ((None, None), (0.28, 0.1), (0.2, 0.0)):
        kwargs = {} if clip_eps is None else {"clip_eps": clip_eps, "beta": beta}
        shown = "defaults clip_eps=0.2, beta=0.04" if clip_eps is None else f"clip_eps={clip_eps}, beta={beta}"
        expect(lambda s, kw=kwargs: s.grpo_loss(logp, old_logp, ref_logp, adv, mask, **kw),
               truth=paper_loss(logp, old_logp, ref_logp, adv, mask, clip_eps or 0.2, 0.04 if beta is None else beta),
               **TOL, name=f"{what}, {shown}) vs -J of the paper's eq. 3 (mean over each completion's tokens, then "
                           "over completions)")
    args = [t.double() if t.is_floating_point() else t for t in (logp, old_logp, ref_logp, adv, mask)]
    expect.gradients(lambda s: s.grpo_loss, [*args, 0.2, 0.04], truth=autograd_loss, atol=1e-12, rtol=1e-9,
                     name="grpo_loss(logp, old_logp, ref_logp (6, 10) float64, advantages, mask, 0.2, 0.04) under "
                          "autograd (input 0 is logp)")


def test_grpo_loss_edge_cases(expect, rng):
    # one update per batch (TRL's num_iterations=1): old_logp == logp, ratio 1, and the reference
    # equal to the policy: the loss is minus the mean advantage over completions
    logp, _, _, adv, mask = loss_batch(rng, [3, 6, 1, 6], 6)
    expect(lambda s: s.grpo_loss(logp, logp.clone(), logp.clone(), adv, mask),
           truth=(-adv.double().mean()).to(torch.float32), **TOL,
           name="grpo_loss(logp, old_logp = logp, ref_logp = logp, advantages (4,), mask) vs minus the mean advantage "
                "(ratio 1, KL 0)")
    # a completion with no valid token (it contributes 0 and still counts), and T = 1
    logp, old_logp, ref_logp, adv, mask = loss_batch(rng, [0, 5, 2], 5)
    expect(lambda s: s.grpo_loss(logp, old_logp, ref_logp, adv, mask),
           truth=paper_loss(logp, old_logp, ref_logp, adv, mask, 0.2, 0.04), **TOL,
           name="grpo_loss(..., mask with 0, 5 and 2 valid tokens) vs the paper's eq. 3 (the empty completion's loss "
                "is 0 and it counts in the mean over 3)")
    logp, old_logp, ref_logp, adv, mask = loss_batch(rng, [1, 1, 1, 1], 1, spread=1.5)
    expect(lambda s: s.grpo_loss(logp, old_logp, ref_logp, adv, mask, beta=0.5),
           truth=paper_loss(logp, old_logp, ref_logp, adv, mask, 0.2, 0.5), **TOL,
           name="grpo_loss(T = 1, ratios far outside the clip range, beta=0.5) vs the paper's eq. 3")


# --- verifiable rewards ---------------------------------------------------------------------


def arithmetic(rng: Any) -> tuple[str, str, str]:
    """A problem, its answer and a line of working, from the check's seeded numbers."""
    a, b = (int(x) for x in rng.randint(2, 99, (2,)))
    if int(rng.randint(0, 2, (1,))):
        return f"What is {a} * {b}?", str(a * b), f"{a} * {b} = {a * b}"
    return f"What is {a} + {b}?", str(a + b), f"{a} + {b} = {a + b}"


def completions_for(answer: str, working: str) -> list[tuple[str, float, str]]:
    """Completions with the reward each must get, and what makes it so."""
    n = int(answer)
    return [
        (f"<think>{working}</think> <answer>{answer}</answer>", 1.0, "right"),
        (f"<think>{working}</think>\n<answer>\n  {answer}\n</answer>", 1.0, "right, whitespace around the answer"),
        (f"<think>{working}</think> <answer>{n + 1}</answer>", 0.0, "wrong"),
        (f"<think>{working}</think> <answer>{answer}0</answer>", 0.0, "an answer that contains the right one"),
        (f"<answer>x = {answer}</answer>", 0.0, "'x = ' before the right number"),
        (f"The answer is {answer}.", 0.0, "no answer tag"),
        (f"<answer>{n - 1}</answer> Wait, that is off by one. <answer>{answer}</answer>", 1.0,
         "corrected: the LAST answer is right"),
        (f"<answer>{answer}</answer> No: <answer>{n + 2}</answer>", 0.0, "the first answer right, the last wrong"),
        (f"<think>{working}</think> <answer>{answer}", 0.0, "truncated: the answer tag is never closed"),
        (f"<Answer>{answer}</Answer>", 0.0, "tags in another case"),
        (f"<answer>{answer}.0</answer>", 0.0, "'.0' after the number (no number parsing)"),
    ]


@pytest.mark.points(2)
def test_extract_answer(expect, rng):
    cases = [
        ("<think>2 + 2 = 4</think> <answer>4</answer>", "4"),
        ("<answer>  17\n</answer>", "17"),
        ("no tags at all", None),
        ("<answer>3</answer> then <answer>5</answer>", "5"),
        ("<answer>3</answer> then <answer>5", None),
        ("<answer>1<answer>2</answer>", "2"),
        ("<answer>multi\nline answer</answer> trailing text", "multi\nline answer"),
        ("</answer> before <answer>9</answer>", "9"),
        ("<answer></answer>", ""),
        ("<ANSWER>4</ANSWER>", None),
    ]
    for text, answer in cases:
        expect(lambda s, t=text: s.extract_answer(t), truth=answer, name=f"extract_answer({text!r})")


@pytest.mark.points(2)
def test_answer_reward_on_arithmetic(expect, rng):
    texts, answers, rewards, kinds = [], [], [], []
    for k in range(3):
        _, answer, working = arithmetic(rng)
        for text, reward, kind in completions_for(answer, working):
            texts.append(text)
            answers.append(answer if k != 1 else f" {answer} ")  # a known answer with spaces is stripped too
            rewards.append(reward)
            kinds.append(kind)
    # one completion at a time first (the first problem's), so a failure shows the text
    for text, answer, reward, kind in zip(texts[:11], answers[:11], rewards[:11], kinds[:11]):
        expect(lambda s, t=text, a=answer: s.answer_reward([t], [a]), truth=torch.tensor([reward]), **REWARD_TOL,
               name=f"answer_reward([{text!r}], [{answer!r}]) ({kind})")
    expect(lambda s: s.answer_reward(texts, answers), truth=torch.tensor(rewards), **REWARD_TOL,
           name=f"answer_reward({len(texts)} completions of 3 arithmetic problems, their answers) vs the reward each "
                "is written to get")
    check(raises(lambda: expect.solution.answer_reward(texts[:3], answers[:2])),
          "answer_reward(3 completions, 2 answers) must raise ValueError")


def test_rewards_to_advantages(expect, rng):
    # the pipeline: 3 prompts x 4 completions; one group all right, one all wrong, one mixed
    texts, answers, rewards = [], [], []
    # indices into completions_for: four right ones; four wrong ones; one right and three wrong
    for pick in ((0, 1, 6, 1), (2, 3, 5, 8), (0, 2, 9, 10)):
        _, answer, working = arithmetic(rng)
        options = completions_for(answer, working)
        texts += [options[i][0] for i in pick]
        answers += [answer] * len(pick)
        rewards += [options[i][1] for i in pick]
    truth_rewards = torch.tensor(rewards)
    assert truth_rewards.tolist() == [1.0] * 4 + [0.0] * 4 + [1.0, 0.0, 0.0, 0.0]
    expect(lambda s: s.group_advantages(s.answer_reward(texts, answers), 4), truth=paper_advantages(truth_rewards, 4),
           **TOL, name="group_advantages(answer_reward(3 prompts x 4 completions: all right, all wrong, 1 of 4 right), "
                       "group_size=4): 0 for the first two groups, (1 - 0.25) / (0.5 + 1e-4) and (0 - 0.25) / (0.5 + "
                       "1e-4) in the third")


@pytest.mark.hidden
def test_hidden_fresh_shapes(expect, rng):
    """float64 and odd sizes the public checks do not use (G = 5 with 3 prompts, T = 19),
    clip_eps 0.15 and beta 0.02, and an end-to-end batch of fresh arithmetic problems."""
    rewards = rng.randn(15, dtype=torch.float64, scale=2.0)
    rewards[5:10] = 0.5  # one all-equal group
    expect(lambda s: s.group_advantages(rewards, 5), truth=paper_advantages(rewards, 5), **TOL64,
           name="group_advantages(float64 rewards (15,), group_size=5, group 1 all equal)")
    logp, old_logp, ref_logp, adv, mask = loss_batch(rng, [19, 3, 11, 0, 1], 19, dtype=torch.float64, spread=0.6)
    expect(lambda s: s.grpo_loss(logp, old_logp, ref_logp, adv, mask, clip_eps=0.15, beta=0.02),
           truth=paper_loss(logp, old_logp, ref_logp, adv, mask, 0.15, 0.02), **TOL64,
           name="grpo_loss(float64 (5, 19), mask with 19, 3, 11, 0 and 1 valid tokens, clip_eps=0.15, beta=0.02)")
    texts, answers, truth = [], [], []
    for _ in range(5):
        _, answer, working = arithmetic(rng)
        options = completions_for(answer, working)
        for i in (0, 3, 6, 8, 4):
            texts.append(options[i][0])
            answers.append(answer)
            truth.append(options[i][1])
    truth_t = torch.tensor(truth)
    expect(lambda s: s.answer_reward(texts, answers), truth=truth_t, **REWARD_TOL,
           name="answer_reward(25 completions of 5 fresh arithmetic problems)")
    expect(lambda s: s.group_advantages(s.answer_reward(texts, answers), 5), truth=paper_advantages(truth_t, 5), **TOL,
           name="group_advantages(answer_reward(5 prompts x 5 completions), group_size=5)")
