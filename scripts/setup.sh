#!/usr/bin/env bash
# Everything a fresh machine needs: the Fashion-MNIST package, chromium (for the report's browser
# test), the CPU build of torch (pinned: an unpinned torch pulls several GB of CUDA packages), and
# cnntricks with its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if command -v apt-get >/dev/null; then
        SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null
    else
        echo "setup: no apt-get; cnntricks will download Fashion-MNIST on first use (data.download=true)" >&2
    fi
fi
if ! command -v chromium >/dev/null; then  # the report's browser test (tests/report/test_html_chromium.py)
    if command -v apt-get >/dev/null; then
        SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: no apt-get; install chromium to run the report's browser test (skipped without it)" >&2
    fi
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e '.[test]'
