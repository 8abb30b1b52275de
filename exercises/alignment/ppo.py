"""PPO for RLHF, per token: GAE, the clipped surrogate, the clipped value loss and KL estimators.

In RLHF with PPO the policy (the language model) writes a response token by token; each
response token is one step of an episode. The batch is (B, T): B responses, each padded to T
tokens. Shared conventions:

- `mask` is a bool tensor (B, T), True on the response's tokens (the steps of the episode),
  False on padding. In each row the True entries are contiguous (right padding, left padding
  or both); a row may have no True entry at all.
- The float tensors of one call share one floating dtype (float32 or float64) and every
  returned tensor has that dtype. Compute in that dtype: float64 inputs are computed in float64.
- Values at masked positions (padding) are arbitrary finite numbers (whatever the model
  gave there) and must not change any result.
- Losses are batch-level token means: the sum over ALL valid tokens of the batch divided by
  the number of valid tokens (one denominator for the whole batch, as TRL's PPOTrainer's
  `masked_mean`), NOT a mean of per-sequence means, and never a mean over padding. With no
  valid token at all the loss is 0 / 0 = NaN.
- Losses stay differentiable with respect to `logp` (policy loss) and `values` (value loss);
  treat `old_logp`, `advantages`, `old_values` and `returns` as constants (detaching them is
  fine). `gae` need not be differentiable (it is computed on detached values in practice).
- Inputs are never modified in place.
"""

from __future__ import annotations

import torch


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over a (B, T) batch.

    `rewards` and `values` are float (B, T): the reward r_t received at step t and the
    critic's value V_t of the state before token t. Returns `(advantages, returns)`, both (B, T).

    For each row, over its valid steps t (mask True), going BACKWARD from the row's last valid
    step:
        delta_t = r_t + gamma * V_{t+1} - V_t
        A_t     = delta_t + gamma * lam * A_{t+1}
        returns_t = A_t + V_t
    The episode ends at the row's last valid token: there V_{t+1} = 0 and A_{t+1} = 0 (no
    bootstrapping from the value at a padding position, which is garbage; this is RLHF's
    per-token PPO as in TRL and OpenRLHF, which set values and rewards to 0 at padding before
    this same recursion). Advantages and returns are 0 at every masked position. No
    whitening or normalisation of the advantages here. The defaults gamma = 1.0 and
    lam = 0.95 are TRL's.

    Two identities hold and are checked: with lam = 0, A_t is the one-step TD error
    r_t + gamma * V_{t+1} - V_t; with lam = 1, returns_t is the discounted Monte-Carlo return
    sum_{k >= 0} gamma^k r_{t+k} over the rest of the row's valid steps.
    """
    raise NotImplementedError


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped surrogate policy loss, a 0-d tensor.

    `logp` (B, T): log pi_theta of each response token under the current policy;
    `old_logp` (B, T): the same under the policy that sampled the batch; `advantages` (B, T).
    Per token, with ratio = exp(logp - old_logp):
        loss_t = -min(ratio * A_t, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A_t)
    and the result is the masked token mean over the whole batch:
        sum over valid (b, t) of loss_t / number of valid (b, t)
    (the same as TRL's max(-A * ratio, -A * clipped ratio)).
    """
    raise NotImplementedError


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> torch.Tensor:
    """PPO's clipped value loss, a 0-d tensor.

    `values` (B, T): the critic's current predictions; `old_values` (B, T): its predictions
    when the batch was collected; `returns` (B, T): the targets (from `gae`). Per token:
        clipped_t = old_values_t + clip(values_t - old_values_t, -clip_eps, clip_eps)
        loss_t    = max((values_t - returns_t)^2, (clipped_t - returns_t)^2)
    and the result is 0.5 times the masked token mean of loss_t over the whole batch (the 0.5
    factor as TRL and OpenRLHF). `clip_eps` is an absolute range on the value, not a ratio.
    """
    raise NotImplementedError


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """A per-token estimate of KL(pi || pi_ref), elementwise, same shape and dtype as `logp`.

    `logp` = log pi(x) and `ref_logp` = log pi_ref(x) of tokens x SAMPLED FROM pi (the policy),
    the setting of Schulman's "Approximating KL divergence". Each estimator's expectation
    over x ~ pi relates to KL(pi || pi_ref) = E_pi[log pi(x) - log pi_ref(x)] (the direction
    RLHF penalises: the policy's divergence from the reference), never the reverse:
        "k1": logp - ref_logp                    (unbiased; may be negative per token)
        "k2": 0.5 * (logp - ref_logp)^2          (biased, low variance; >= 0)
        "k3": (r - 1) - log r, r = exp(ref_logp - logp) = pi_ref(x) / pi(x)
                                                 (unbiased, since E_pi[r] = 1; >= 0 per token)
    Signs: k1 is positive where the policy gives the token more mass than the reference. The
    default kind is "k1" (TRL's PPO default). An unknown `kind` raises ValueError. No mask here: every position is computed, and the caller
    masks. For r near 1, (r - 1) - log r is tiny: torch.expm1 computes r - 1 without losing
    digits (the checks allow float rounding either way).
    """
    raise NotImplementedError
