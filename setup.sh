#!/bin/sh
# Idempotent set-up for a Debian 12 or 13 host, run as root. It installs only what is missing, so a
# second run takes about a second.
#
#   ./setup.sh          what the daemon needs (make run): nftables' binding, a venv with adaptive in it
#   ./setup.sh test     besides, what the tests need (make test): the real servers adaptive is tested
#                       against, fail2ban, promtool, debootstrap, the Debian packaging tools, and the
#                       linters in the venv. The servers' units are disabled and masked: the tests run
#                       them by hand in namespaces, and nothing of theirs may start on the host.
#   ./setup.sh build    the tools `make deb` builds the Debian package with
set -eu
cd "$(dirname "$0")"
mode=${1:-run}

# The daemon's libraries are Debian's, the ones its package depends on: the venv (which sees them
# through --system-site-packages) and the tests run what an installed adaptive runs.
RUNTIME="nftables python3-nftables python3-regex python3-watchdog python3-prometheus-client python3-systemd
         python3-venv iproute2 ca-certificates"
BUILD="debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools"
# Servers (and their Debian packages' units, masked below), tools of the tests and benchmarks.
SERVERS="postfix dovecot-core dovecot-imapd dovecot-pop3d prometheus fail2ban"
# systemd-journal-remote writes the real journal files the journal source is tested on.
TESTS="openssl debootstrap bash-completion systemd-journal-remote $BUILD"
UNITS="postfix.service dovecot.service dovecot.socket prometheus.service fail2ban.service
       systemd-journal-remote.socket systemd-journal-remote.service systemd-journal-upload.service"

case $mode in
    run) packages=$RUNTIME ;;
    build) packages="$RUNTIME $BUILD" ;;
    test) packages="$RUNTIME $SERVERS $TESTS" ;;
    *) echo "usage: setup.sh [run|test|build]" >&2; exit 2 ;;
esac

missing=""
for p in $packages; do
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

if [ "$mode" = test ]; then
    # Whatever Debian enabled for them: not at the next boot, not by a socket, not by hand by mistake.
    for unit in $UNITS; do
        if [ ! -L "/etc/systemd/system/$unit" ] && { [ -e "/lib/systemd/system/$unit" ] \
                || [ -e "/usr/lib/systemd/system/$unit" ]; }; then
            systemctl --root=/ --quiet disable "$unit" 2>/dev/null || true
            systemctl --root=/ --quiet mask "$unit"
        fi
    done
fi

[ "$mode" = build ] && exit 0

# The venv sees Debian's python3-nftables and the libraries above through --system-site-packages.
if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv
fi
extras=""
[ "$mode" = test ] && extras="[test]"
stamp=.venv/.adaptive-installed$extras
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
    touch "$stamp"
fi
.venv/bin/python -c 'import nftables, regex, watchdog, prometheus_client, systemd.journal' \
    || { echo "setup: the venv cannot import its dependencies" >&2; exit 1; }
