#!/usr/bin/env bash
# Installs what the test receivers need, idempotently (CI runs it as root on a fresh machine):
#   - aiosmtpd, the real SMTP server behind tests/support/smtp_server.py (STARTTLS, AUTH).
#   - feedparser, the real feed parser that checks the exported Atom feeds (tests/it/publish.rs).
#   - Debian's chromium, the headless browser that loads the web view (tests/it/web.rs).
#   - man-db, to render the generated man page (tests/it/shell.rs).
# The webhook receiver is Rust (axum) and the test certificates are made by rcgen: nothing to
# install for those. Set PYTHON to use an interpreter other than python3 (and pass the same one
# to the tests as TRIALWATCH_TEST_PYTHON).
set -euo pipefail

AIOSMTPD_VERSION=1.4.6
PY=${PYTHON:-python3}

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "install-test-deps: $PY not found; installing Debian's python3" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null
fi

have_aiosmtpd() {
    "$PY" -c "import sys, aiosmtpd; sys.exit(aiosmtpd.__version__ != '$AIOSMTPD_VERSION')" 2>/dev/null
}

if ! have_aiosmtpd; then
    # --break-system-packages only matters for a Debian-managed python3 (PEP 668); pyenv's
    # and a venv's pip ignore the environment marker it overrides. Older pips lack the flag.
    "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "aiosmtpd==$AIOSMTPD_VERSION" \
        || "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages \
            "aiosmtpd==$AIOSMTPD_VERSION"
fi

have_aiosmtpd || { echo "install-test-deps: aiosmtpd $AIOSMTPD_VERSION did not install for $PY" >&2; exit 1; }
echo "install-test-deps: aiosmtpd $AIOSMTPD_VERSION ready for $("$PY" --version 2>&1)"

FEEDPARSER_VERSION=6.0.12
have_feedparser() {
    "$PY" -c "import sys, feedparser; sys.exit(feedparser.__version__ != '$FEEDPARSER_VERSION')" 2>/dev/null
}
if ! have_feedparser; then
    "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "feedparser==$FEEDPARSER_VERSION" \
        || "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --break-system-packages \
            "feedparser==$FEEDPARSER_VERSION"
fi
have_feedparser || { echo "install-test-deps: feedparser $FEEDPARSER_VERSION did not install for $PY" >&2; exit 1; }
echo "install-test-deps: feedparser $FEEDPARSER_VERSION ready"

if ! command -v chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v chromium >/dev/null 2>&1 || { echo "install-test-deps: chromium did not install" >&2; exit 1; }
echo "install-test-deps: $(chromium --version 2>/dev/null | head -1) ready"

# man-db renders the generated man page in tests/it/shell.rs (`man -l`); without it the test
# checks the roff structure only.
if ! command -v man >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null
fi

# util-linux's `script` gives tests/it/habits.rs a real pseudo-terminal, to see the progress bar a
# sync handed to the daemon draws (bsdutils is essential on Debian; this covers slimmer images).
if ! command -v script >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bsdutils >/dev/null
fi
command -v script >/dev/null 2>&1 || { echo "install-test-deps: script (bsdutils) did not install" >&2; exit 1; }
