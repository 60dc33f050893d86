#!/usr/bin/env bash
# Everything a fresh machine needs: the Fashion-MNIST package, chromium (for the report's browser
# test), PostgreSQL (the test of cnntricks tune's shared study starts its own server on loopback), the
# CPU build of torch (pinned: an unpinned torch pulls several GB of CUDA packages), and cnntricks with its
# test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
apt_install() {  # apt_install PACKAGE WHY: install a Debian package, or say what is lost without apt-get
    if command -v apt-get >/dev/null; then
        SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
        $SUDO apt-get update -qq
        $SUDO apt-get install -y -qq "$1" >/dev/null
    else
        echo "setup: no apt-get; $2" >&2
    fi
}
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    apt_install dataset-fashion-mnist "cnntricks will download Fashion-MNIST on first use (data.download=true)"
fi
if ! command -v chromium >/dev/null; then  # the report's browser test (tests/report/test_html_chromium.py)
    apt_install chromium "install chromium to run the report's browser test (skipped without it)"
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then  # tests/tune/test_postgres.py starts a server
    apt_install postgresql "install PostgreSQL to run the shared-study test of cnntricks tune (skipped without it)"
fi
# Fonts for data.source=letters (cnntricks/data/letters.py renders A-J from every font under
# /usr/share/fonts): small packages of distinct designs, about 25 MB in all.
# Icon themes for benchmarks/doctor_generalization.py's RGB image folder (PNG icons by context).
ICON_PACKAGES="adwaita-icon-theme oxygen-icon-theme tango-icon-theme"
FONT_PACKAGES="fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-freefont-ttf fonts-urw-base35
    fonts-crosextra-carlito fonts-crosextra-caladea fonts-open-sans fonts-comic-neue fonts-ebgaramond fonts-go
    fonts-inconsolata fonts-cantarell"
MISSING_FONTS=$(for package in $FONT_PACKAGES $ICON_PACKAGES; do
    [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || echo "$package"
done)
if [ -n "$MISSING_FONTS" ]; then
    if command -v apt-get >/dev/null; then
        SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
        $SUDO apt-get update -qq
        KNOWN_FONTS=$(for package in $MISSING_FONTS; do  # a release without one of them still gets the rest
            if apt-cache show "$package" >/dev/null 2>&1; then echo "$package"; fi
        done)
        # shellcheck disable=SC2086  # one word per package
        [ -z "$KNOWN_FONTS" ] || $SUDO apt-get install -y -qq $KNOWN_FONTS >/dev/null
    else
        echo "setup: no apt-get; install TrueType/OpenType fonts for data.source=letters (it reads every font" \
             "under /usr/share/fonts and ~/.local/share/fonts), and $ICON_PACKAGES for benchmarks/doctor_generalization.py" >&2
    fi
fi
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e '.[test]'
