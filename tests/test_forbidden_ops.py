"""An exercise's forbidden library ops fail the check with the op named."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_grade


def test_calling_the_library_op_fails_with_its_name(solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(
        "import torch\n"
        "def softmax(x, dim=-1):\n    return torch.softmax(x, dim)\n"
        "def log_softmax(x, dim=-1):\n    return torch.nn.functional.log_softmax(x, dim)\n"
        "def logsumexp(x, dim=-1, keepdim=False):\n    return x.logsumexp(dim, keepdim=keepdim)\n"
    )
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.softmax", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    messages = {c["name"]: c["message"] for c in checks}
    assert all(c["outcome"] == "failed" for c in checks), messages
    assert "may not use torch.softmax" in messages["softmax_matches_torch"]
    assert "may not use torch.nn.functional.log_softmax" in messages["log_softmax_matches_torch"]
    assert "may not use torch.Tensor.logsumexp" in messages["logsumexp_matches_torch"]


def test_autograd_is_forbidden_but_gradient_probes_still_work(solutions_copy: Path, tmp_path: Path):
    source = (solutions_copy / "foundations" / "layernorm_backward.py").read_text()
    cheat = source + (
        "\n\ndef layernorm_backward(grad_y, cache):\n"
        "    import torch\n"
        "    x = torch.ones(3, requires_grad=True)\n"
        "    (x * 2).sum().backward()\n"
        "    return x.grad, x.grad, x.grad\n"
    )
    (solutions_copy / "foundations" / "layernorm_backward.py").write_text(cheat)
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.layernorm_backward", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    backward = [c for c in checks if c["name"] == "backward_matches_autograd_float64"][0]
    assert backward["outcome"] == "failed"
    assert "may not use torch.Tensor.backward" in backward["message"]
    forward = [c for c in checks if c["name"] == "forward_matches_f_layer_norm"][0]
    assert forward["outcome"] == "passed", forward["message"]


def test_student_code_called_from_a_probe_is_still_guarded(solutions_copy: Path, tmp_path: Path):
    """Wrapping the library optimizer and stepping it only inside the judge's probe is caught."""
    (solutions_copy / "foundations" / "optimizers.py").write_text(
        "import torch\n"
        "class _Wrapped(torch.optim.Optimizer):\n"
        "    def __init__(self, params, **kw):\n"
        "        self._params, self._kw, self._inner = list(params), kw, None\n"
        "        super().__init__(self._params, kw)\n"
        "    def step(self, closure=None):\n"
        "        if self._inner is None:\n"
        "            self._inner = self.library(self._params, **self._kw)\n"
        "        return self._inner.step(closure)\n"
        "class SGD(_Wrapped):\n"
        "    library = torch.optim.SGD\n"
        "    def __init__(self, params, lr, momentum=0.0, weight_decay=0.0, nesterov=False):\n"
        "        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)\n"
        "class AdamW(_Wrapped):\n"
        "    library = torch.optim.AdamW\n"
        "    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):\n"
        "        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)\n"
    )
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "foundations.optimizers.sgd_momentum",
                     "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    [check] = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    assert check["outcome"] == "failed"
    assert "may not use torch.optim.SGD" in check["message"]


def test_sdpa_may_not_call_the_library_attention(solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "attention" / "sdpa.py").write_text(
        "import torch.nn.functional as F\n"
        "def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False, scale=None):\n"
        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)\n"
    )
    out = tmp_path / "r.json"
    proc = run_grade("--solutions", str(solutions_copy), "attention.sdpa", "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads(out.read_text())["tracks"][0]["exercises"][0]["checks"]
    assert checks and all(c["outcome"] == "failed" for c in checks)
    assert all(
        "attention.sdpa may not use torch.nn.functional.scaled_dot_product_attention" in c["message"] for c in checks
    ), [c["message"] for c in checks]
