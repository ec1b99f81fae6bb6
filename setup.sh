#!/bin/sh
# Idempotent set-up for a Debian bookworm host, run as root: `make run` and `make test` call it first.
# It installs only what is missing, so a second run takes about a second.
set -eu
cd "$(dirname "$0")"

# Runtime: the kernel binding. Tests: the real servers adaptive is tested against, fail2ban for the
# side-by-side benchmarks, and debootstrap for the Debian 13 root the tests build (tests/debroot.py).
PACKAGES="nftables python3-nftables python3-venv iproute2 ca-certificates openssl
postfix dovecot-core dovecot-imapd dovecot-pop3d prometheus fail2ban debootstrap"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    # Postfix asks how to configure itself; the tests give it their own config directory.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    # The test servers run inside network namespaces: keep apt from starting them in the host's.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# The venv sees Debian's python3-nftables through --system-site-packages.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.adaptive-installed
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
    touch "$stamp"
fi
.venv/bin/python -c 'import nftables, regex, watchdog, prometheus_client' \
    || { echo "setup: the venv cannot import its dependencies" >&2; exit 1; }
