#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder image is built; the bundle is
# unpacked in /autograder/source. It installs Python, a CPU build of torch and llm-grader
# with the course (references and hidden checks included: the image is the instructor's).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
/autograder/venv/bin/python -m pip install --quiet "torch>=2.4,<2.14" --index-url https://download.pytorch.org/whl/cpu
# editable: the course (exercises/, reference/, plugins/) is read from /autograder/source
/autograder/venv/bin/python -m pip install --quiet -e /autograder/source
