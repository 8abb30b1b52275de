"""A broken or hostile solution costs only its own checks: never the grader, another
exercise, the results file, or a stray process; and it gains nothing.

The attacks of the second half each worked before the sandbox: a hostile student read the
references, the judge's environment, deleted files, reached the network, left processes
running, and killed the judge. Each is run here as `grade` runs it, strict isolation.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    exercise_scores,
    load_results,
    processes_with_marker,
    run_grade,
    run_leftovers,
)

TARGETS = ["foundations.softmax", "foundations.cross_entropy"]
TIMEOUT_S = 3.0

# Wrong answers, and every comparison a judge could use patched to agree: the judge's own
# (grader.compare) where it can be reached, as in-process grading would allow, and torch's
# and numpy's. Only isolation keeps it from scoring (test_patched_comparisons_...).
PATCHES_THE_COMPARISONS = """
import numpy
import numpy.testing
import torch
try:
    import grader.compare as judge
    judge._value_problem = lambda *a, **k: None
    judge._equal_problem = lambda *a, **k: None
    judge.check = lambda *a, **k: None
except ImportError:
    pass
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
numpy.testing.assert_allclose = lambda *a, **k: None
numpy.allclose = lambda *a, **k: True
def softmax(x, dim=-1, keepdim=False):
    return x * 0
log_softmax = softmax
def logsumexp(x, dim=-1, keepdim=False):
    return x.sum(dim)
"""

HOSTILE = {
    "hangs": """
def softmax(x, dim=-1, keepdim=False):
    while True:
        pass
log_softmax = logsumexp = softmax
""",
    "exits_at_import": """
import os
os._exit(0)
""",
    "segfaults": """
import ctypes
def softmax(x, dim=-1, keepdim=False):
    return ctypes.string_at(0)
log_softmax = logsumexp = softmax
""",
    "equal_to_everything": """
class Anything:
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def __bool__(self):
        return True
    def __getattr__(self, name):
        return self
    def __call__(self, *a, **k):
        return self
def softmax(x, dim=-1, keepdim=False):
    return Anything()
log_softmax = logsumexp = softmax
""",
    "patches_the_comparisons": PATCHES_THE_COMPARISONS,
    "allocates_without_bound": """
import torch
def softmax(x, dim=-1, keepdim=False):
    hoard = []
    while True:
        hoard.append(torch.empty(1 << 28))  # 1 GiB more each time
log_softmax = logsumexp = softmax
""",
    "prints_a_gigabyte": """
import sys
def softmax(x, dim=-1, keepdim=False):
    chunk = "x" * (1 << 24)
    for _ in range(64):
        sys.stdout.write(chunk)
    print("y" * (1 << 20), file=sys.stderr)
    return x
log_softmax = logsumexp = softmax
""",
}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[float, float, str]]:
    out = tmp_path_factory.mktemp("baseline") / "results.json"
    proc = run_grade("--solutions", "reference", *TARGETS, "--report", f"json:{out}", "-q")
    assert proc.returncode == 0, proc.stderr
    return exercise_scores(load_results(out))


HOSTILE["returns_a_huge_value"] = """
import torch
def softmax(x, dim=-1, keepdim=False):
    return torch.zeros(300 << 18)  # 300 MiB of float32
log_softmax = logsumexp = softmax
"""
HOSTILE["fork_bomb"] = """
import os
def softmax(x, dim=-1, keepdim=False):
    children = 0
    while children < 100000:
        try:
            if os.fork() == 0:
                import time
                time.sleep(600)
                os._exit(0)
            children += 1
        except OSError as e:
            raise RuntimeError(f"forked {children} processes, then {e}")
    return x
log_softmax = logsumexp = softmax
"""
HOSTILE["opens_files_without_bound"] = """
import os
def softmax(x, dim=-1, keepdim=False):
    kept = []
    while len(kept) < 1000000:
        try:
            kept.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as e:
            raise RuntimeError(f"opened {len(kept)} files, then {e}")
    return x
log_softmax = logsumexp = softmax
"""


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_solution_costs_only_its_own_exercise(case, baseline, solutions_copy: Path, tmp_path: Path):
    (solutions_copy / "foundations" / "softmax.py").write_text(HOSTILE[case])
    out = tmp_path / "results.json"
    started = time.monotonic()
    proc = run_grade(
        "--solutions", str(solutions_copy), *TARGETS, "--report", f"json:{out}", "--timeout", str(TIMEOUT_S), "-q",
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    scores = exercise_scores(load_results(out))
    assert set(scores) == set(TARGETS), "the results file must list every exercise"
    assert scores["foundations.cross_entropy"] == baseline["foundations.cross_entropy"]
    score, max_score, status = scores["foundations.softmax"]
    assert max_score == baseline["foundations.softmax"][1]
    assert score < max_score, f"a hostile solution ({case}) scored full marks"
    assert run_leftovers(proc) == [], "a solution process outlived the run"
    data = load_results(out)
    checks = [c for t in data["tracks"] for e in t["exercises"] if e["id"] == "foundations.softmax" for c in e["checks"]]
    if case == "hangs":
        assert all(c["outcome"] == "timeout" for c in checks)
        assert all(c["duration_s"] <= TIMEOUT_S + 2 for c in checks), [c["duration_s"] for c in checks]
        assert elapsed < 120
    if case == "segfaults":
        assert all(c["outcome"] == "crashed" for c in checks)
        assert "SIGSEGV" in checks[0]["message"]
    if case == "exits_at_import":
        assert status == "error"
        assert "exited with status 0" in checks[0]["message"]
    if case == "allocates_without_bound":
        assert any("memory limit" in c["message"] for c in checks), checks[0]["message"]
    if case == "prints_a_gigabyte":
        assert all(len(c["output"]) < 200_000 for c in checks)
    if case == "returns_a_huge_value":
        assert all("over the 256 MiB limit" in c["message"] for c in checks), [c["message"] for c in checks]
    if case == "fork_bomb":
        forked = int(checks[0]["message"].split("forked ", 1)[1].split()[0])
        assert forked < 256, checks[0]["message"]
    if case == "opens_files_without_bound":
        assert "opened 10" in checks[0]["message"] and "Too many open files" in checks[0]["message"], checks[0]["message"]


def test_patched_comparisons_score_in_process_but_not_isolated(solutions_copy: Path):
    """The hostile case above can fail: graded in the judge's own process (direct mode,
    what lost isolation would mean) its patches make wrong answers pass."""
    import subprocess
    import sys

    (solutions_copy / "foundations" / "softmax.py").write_text(PATCHES_THE_COMPARISONS)
    direct = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "plugins/foundations/check_softmax.py",
         "--grade-solutions", str(solutions_copy)], cwd=ROOT, capture_output=True, text=True)
    assert " passed" in direct.stdout, f"in-process, the patches gained nothing:\n{direct.stdout[-2000:]}"


# --- attacks: each gained something before the sandbox ------------------------------------


def _attack(name: str, source: str, solutions: Path, tmp_path: Path, env: dict[str, str] | None = None,
            targets: list[str] = TARGETS, jobs: str = "1") -> tuple[dict, dict, object]:
    """Grade `source` as foundations.softmax beside the reference cross_entropy, strictly."""
    (solutions / "foundations" / "softmax.py").write_text(source)
    out = tmp_path / f"{name}.json"
    proc = run_grade("--solutions", str(solutions), *targets, "--report", f"json:{out}", "--timeout", "10",
                     "--isolation", "strict", "-j", jobs, "-q", env=env)
    assert proc.returncode == 0, f"grade exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    data = load_results(out)
    assert set(exercise_scores(data)) == set(targets), "the results file must list every exercise"
    assert run_leftovers(proc) == [], "a solution process outlived the run"
    return data, exercise_scores(data), proc


def _softmax_checks(data: dict) -> list[dict]:
    return [c for t in data["tracks"] for e in t["exercises"] if e["id"] == "foundations.softmax" for c in e["checks"]]


STEAL_THE_REFERENCE = f"""
import os
try:
    from reference.foundations.softmax import *  # the repository root on sys.path
except ImportError:
    found = None
    for path in [{str(ROOT / "reference" / "foundations" / "softmax.py")!r}]:
        if os.path.exists(path):
            found = path
    if found is None:  # walk the filesystem for reference/foundations/softmax.py
        for top in ("/work", "/root", "/home", "/tmp", "/srv", "/opt"):
            for here, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if d not in ("site-packages", "proc", "sys")]
                if here.endswith(os.path.join("reference", "foundations")) and "softmax.py" in files:
                    found = os.path.join(here, "softmax.py")
                    break
            if found:
                break
    if found:
        exec(compile(open(found).read(), found, "exec"))
    else:
        def softmax(x, dim=-1, keepdim=False):
            raise NotImplementedError
        log_softmax = logsumexp = softmax
"""


def test_the_references_cannot_be_imported_or_read(baseline, solutions_copy: Path, tmp_path: Path):
    data, scores, _ = _attack("steal", STEAL_THE_REFERENCE, solutions_copy, tmp_path)
    assert scores["foundations.softmax"][0] == 0, "a solution copied the reference"
    assert scores["foundations.cross_entropy"] == baseline["foundations.cross_entropy"]


SPY = """
import json, os, signal, socket
SECRETS = {secrets!r}
def softmax(x, dim=-1, keepdim=False):
    report = {{"environ": sorted(os.environ), "found": [], "deleted": [], "wrote": [], "connected": False,
              "uid_map": open("/proc/self/uid_map").read().split(), "pids": []}}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        report["pids"] = sorted(report["pids"] + [int(pid)])
        for what in ("environ", "cmdline"):
            try:
                text = open(f"/proc/{{pid}}/{{what}}", "rb").read().decode(errors="replace")
            except OSError:
                continue
            report["found"] += [s for s in SECRETS if s in text]
    for value in os.environ.values():
        report["found"] += [s for s in SECRETS if s in value]
    for path in {victims!r}:
        try:
            os.remove(path)
            report["deleted"].append(path)
        except OSError:
            pass
    try:
        with open(os.path.join({solutions!r}, "foundations", "planted.py"), "w") as f:
            f.write("planted")
        report["wrote"].append("solutions")
    except OSError:
        pass
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
        report["connected"] = True
    except OSError:
        pass
    # A process that tries to outlive the run: double fork, new session, exec.
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            import sys
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", {marker!r}])
        os._exit(0)
    os.wait()
    raise RuntimeError("SPY" + json.dumps(report) + "YPS")
log_softmax = logsumexp = softmax
"""


@pytest.fixture(scope="module")
def spied(tmp_path_factory: pytest.TempPathFactory, baseline) -> dict:
    """One strictly isolated run of a solution that tries everything at once."""
    import shutil

    tmp = tmp_path_factory.mktemp("spy")
    solutions = tmp / "solutions"
    shutil.copytree(ROOT / "reference", solutions, ignore=shutil.ignore_patterns("__pycache__"))
    canary = tmp / "canary.txt"
    canary.write_text("keep me")
    own_file = solutions / "foundations" / "cross_entropy.py"
    secrets = {"GRADE_SECRET_SALT": f"salt-{uuid.uuid4().hex}", "GITHUB_TOKEN": f"ghp-{uuid.uuid4().hex}"}
    marker = f"left-behind-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    source = SPY.format(secrets=list(secrets.values()), victims=[str(canary), str(own_file)],
                        solutions=str(solutions), port=listener.getsockname()[1], marker=marker)
    data, scores, proc = _attack("spy", source, solutions, tmp, env=secrets)
    try:
        listener.accept()
        accepted = True
    except BlockingIOError:
        accepted = False
    listener.close()
    message = next((c["message"] for c in _softmax_checks(data) if "SPY" in c["message"]), "")
    report = json.loads(message.split("SPY", 1)[1].rsplit("YPS", 1)[0]) if message else {}
    return {"report": report, "data": data, "scores": scores, "proc": proc, "canary": canary, "own_file": own_file,
            "secrets": secrets, "marker": marker, "accepted": accepted, "baseline": baseline}


def test_spy_ran_and_was_reported(spied):
    assert spied["report"], "the spying solution's report did not come back"
    assert spied["scores"]["foundations.softmax"][0] == 0
    assert spied["scores"]["foundations.cross_entropy"] == spied["baseline"]["foundations.cross_entropy"]


def test_the_judges_environment_is_not_seen(spied):
    report = spied["report"]
    assert report["found"] == [], "a secret of the judge's environment was read"
    assert not set(report["environ"]) & set(spied["secrets"]), report["environ"]
    allowed = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES",
               "NVIDIA_VISIBLE_DEVICES", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "TRITON_INTERPRET", "HOME",
               "TMPDIR", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM",
               "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE"}
    assert set(report["environ"]) <= allowed, set(report["environ"]) - allowed
    text = json.dumps(spied["data"])
    assert not any(s in text for s in spied["secrets"].values())


def test_nothing_outside_the_exercise_is_written(spied):
    assert spied["canary"].read_text() == "keep me"
    assert spied["own_file"].exists()
    assert spied["report"]["deleted"] == [] and spied["report"]["wrote"] == []
    assert not (spied["own_file"].parent / "planted.py").exists()


def test_the_judges_network_is_not_reached(spied):
    assert spied["report"]["connected"] is False
    assert spied["accepted"] is False


def test_it_sees_only_its_own_processes(spied):
    # Its own PID namespace: on its first call, nothing but itself, as PID 1.
    assert spied["report"]["pids"] == [1]


KILLER = """
import os, signal
def softmax(x, dim=-1, keepdim=False):
    killed = []
    # Its parent chain (the zygote, the judge): kill every one of them that is the grader.
    targets = set()
    pid = os.getppid()
    while pid > 1:
        targets.add(pid)
        try:
            pid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    targets.discard(os.getpid())
    for p in sorted(targets):
        try:
            cmd = open(f"/proc/{p}/cmdline", "rb").read()
        except OSError:
            cmd = b""
        if b"grade" not in cmd:  # never anything but the grader, whatever happens
            continue
        try:
            os.kill(p, signal.SIGKILL)
            killed.append(p)
        except OSError:
            pass
    reachable = 0  # any process at all that a signal could reach (signal 0 only asks)
    own_threads = {int(t) for t in os.listdir("/proc/self/task")}  # kill() takes their ids too
    for p in range(2, 1 << 16):
        if p in own_threads:
            continue
        try:
            os.kill(p, 0)
            reachable += 1
        except OSError:
            pass
    raise RuntimeError(f"reachable {reachable}, killed {killed}")
log_softmax = logsumexp = softmax
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_judge_cannot_be_signalled(jobs, baseline, solutions_copy: Path, tmp_path: Path):
    """Nor the zygote, nor (with -j 2, running beside it) the other exercise's process."""
    data, scores, proc = _attack("killer", KILLER, solutions_copy, tmp_path, jobs=jobs)
    assert proc.returncode == 0
    assert scores["foundations.softmax"][0] == 0
    assert scores["foundations.cross_entropy"] == baseline["foundations.cross_entropy"]
    assert all(c["message"].endswith("reachable 0, killed []") for c in _softmax_checks(data)), \
        _softmax_checks(data)[0]["message"]


def test_the_solution_runs_as_another_uid(spied):
    inside, outside, count = spied["report"]["uid_map"][:3]
    assert int(outside) != os.getuid()


def test_nothing_is_left_running(spied):
    assert processes_with_marker(spied["marker"]) == [], "a process started by the solution outlived the run"
