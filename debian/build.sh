#!/bin/sh
# Build adaptive_<version>_all.deb into OUT (default build/) from a copy of the checkout's files
# (tracked and new, not ignored), so the checkout stays clean. The package's version is the one of
# debian/changelog, which must be adaptive.__version__; VERSION (the second argument, starting with
# adaptive.__version__, as 0.1.0+test1) builds a later one, with a changelog entry of its own in the copy:
# what the tests upgrade to.
set -eu
# Debian's own Python and tools, not a pyenv or a venv found first on PATH.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-build}")
version=$(dpkg-parsechangelog -S Version)
code=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' adaptive/__init__.py)
if [ "$version" != "$code" ]; then
    echo "debian/build.sh: debian/changelog says $version, adaptive/__init__.py says $code" >&2
    exit 1
fi
work=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
mkdir "$work/adaptive-$code"
git ls-files -co --exclude-standard -z | xargs -0 cp -P --parents -t "$work/adaptive-$code"
if [ -n "${2:-}" ]; then
    case $2 in "$code"?*) ;; *) echo "debian/build.sh: $2 does not start with $code" >&2; exit 1 ;; esac
    entry=$(printf 'adaptive (%s) unstable; urgency=medium\n\n  * Built as %s by debian/build.sh.\n\n -- %s  %s\n\n' \
        "$2" "$2" "adaptive developers <adaptive@localhost>" "$(date -R)")
    printf '%s\n' "$entry" | cat - debian/changelog > "$work/adaptive-$code/debian/changelog"
    version=$2
fi
(cd "$work/adaptive-$code" && dpkg-buildpackage -us -uc -b --no-sign) > "$work/build.log" 2>&1 || {
    tail -40 "$work/build.log" >&2
    exit 1
}
mkdir -p "$out"
cp "$work/adaptive_${version}_all.deb" "$out/"
echo "$out/adaptive_${version}_all.deb"
