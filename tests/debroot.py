"""Cached Debian roots for the tests: another Debian release's Postfix, Dovecot and Python, run in a chroot.

    root = debroot.root("trixie")        # /var/cache/adaptive-tests/trixie-<hash>, built if missing
    debroot.chroot_command(root, ["postconf", "mail_version"], binds=[scene_dir])

    python tests/debroot.py build trixie # the same from the command line (prints the root's path)
    python tests/debroot.py path trixie  # where it is (or would be), without building
    python tests/debroot.py run trixie -- postconf -d mail_version

A root is built with debootstrap (minbase) from the Debian mirror, then the packages are installed with
apt inside it, with a policy-rc.d that keeps every service from starting and Postfix's debconf question
answered "No configuration". It is built in a temporary directory beside the cache and renamed into
place when complete, so an interrupted build never leaves a half root; its directory name carries a
hash of the suite, mirror and package list, so a changed list makes a new root (and the old one is
removed). A lock serialises builds.

A root is never written to once built: `chroot_command` runs a command in a private mount namespace,
on an overlay of the root whose writable layer is a tmpfs (gone when the last process of the namespace
ends), with /proc, /dev and the directories asked for bind-mounted at their own paths. Nothing of it is
seen outside, nothing outlives the command's processes: no mount to clean up, even after `kill -9`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

CACHE = Path("/var/cache/adaptive-tests")
MIRROR = "http://deb.debian.org/debian"
RECIPE = 1      # bump when the way a root is built changes, so roots built the old way are rebuilt

# The servers adaptive is tested against, and what running adaptive's own tests on the release needs.
SERVERS = ["postfix", "dovecot-core", "dovecot-imapd", "dovecot-pop3d", "dovecot-submissiond",
           "openssl", "ca-certificates"]
PYTHON = ["python3", "python3-nftables", "nftables", "python3-regex", "python3-watchdog",
          "python3-prometheus-client", "python3-systemd", "python3-pytest", "python3-hypothesis", "iproute2", "procps"]
# What the Debian package needs from the archive, for the roots its tests install it in.
PACKAGE_DEPENDS = ["python3", "python3-nftables", "nftables", "python3-regex", "python3-watchdog",
                   "python3-prometheus-client", "python3-systemd"]
# A root's name -> the packages installed in it. A name is a Debian suite, or SUITE-fresh: a root as
# debootstrap leaves it (minbase), with the archive's lists and DOWNLOADS[name] fetched into apt's cache
# but not installed, so apt can install a package and its dependencies there without the network.
PACKAGES = {"trixie": SERVERS + PYTHON, "bookworm-fresh": [], "trixie-fresh": []}
DOWNLOADS = {"bookworm-fresh": PACKAGE_DEPENDS, "trixie-fresh": PACKAGE_DEPENDS}

POLICY_RC_D = "#!/bin/sh\n# adaptive's test root: no service starts here.\nexit 101\n"

# Run by `sh -c` inside `unshare --mount`: $1 the root, $2 a scratch mount point, $3.. the directories
# to bind, then "--" and the command. The overlay's upper layer is a tmpfs of this namespace only.
_ENTER = r"""
set -eu
root=$1; scratch=$2; shift 2
mount -t tmpfs -o mode=0755 adaptive-root "$scratch"
mkdir "$scratch/upper" "$scratch/work" "$scratch/root"
mount -t overlay -o "lowerdir=$root,upperdir=$scratch/upper,workdir=$scratch/work" adaptive-root "$scratch/root"
new=$scratch/root
mount -t proc proc "$new/proc"
mount -t sysfs sysfs "$new/sys"
mount --rbind /dev "$new/dev"
mount -t tmpfs -o mode=1777 tmpfs "$new/tmp"
mount -t tmpfs -o mode=0755 tmpfs "$new/run"
while [ "$1" != "--" ]; do
    mkdir -p "$new$1"
    mount --rbind "$1" "$new$1"
    shift
done
shift
cd "$new" && exec chroot "$new" /usr/bin/env -u PYTHONPATH -u VIRTUAL_ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"
"""


class RootError(RuntimeError):
    """A root cannot be had here (no debootstrap, no network, not root); the message says why."""


def suite_of(name: str) -> str:
    """The Debian suite a root of that name is of ("trixie" for "trixie-fresh")."""
    return name.removesuffix("-fresh")


def digest(suite: str) -> str:
    """What the root's directory name carries: the recipe, suite, mirror and packages."""
    text = "\n".join([str(RECIPE), suite, MIRROR, *sorted(PACKAGES[suite]),
                      *(f"download {p}" for p in sorted(DOWNLOADS.get(suite, ())))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def path(suite: str) -> Path:
    return CACHE / f"{suite}-{digest(suite)}"


def missing(suite: str = "trixie") -> str:
    """Why a root of `suite` cannot be had here ("" if it can: it exists, or can be built)."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, mount namespaces)"
    if suite not in PACKAGES:
        return f"no package list for {suite!r}"
    if (path(suite) / ".complete").exists():
        return ""
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"needs {tool} to build the {suite} root (setup.sh installs debootstrap)"
    host = urllib.parse.urlsplit(MIRROR).hostname
    try:
        socket.create_connection((host, 80), timeout=10).close()
    except OSError as e:
        return f"cannot reach {host} to build the {suite} root: {e}"
    return ""


def root(suite: str = "trixie", log=None) -> Path:
    """The ready root of `suite`, built first if missing (a few minutes; RootError if it cannot be)."""
    ready = path(suite)
    if (ready / ".complete").exists():
        return ready
    if why := missing(suite):
        raise RootError(why)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)       # another process may be building it: wait for it
        if not (ready / ".complete").exists():
            _build(suite, ready, log or sys.stderr)
        _remove_stale(suite, keep=ready)
    return ready


def _build(suite: str, ready: Path, log) -> None:
    started = time.monotonic()
    building = CACHE / f".building-{ready.name}-{os.getpid()}"
    for old in CACHE.glob(f".building-{ready.name}-*"):      # an interrupted build's leftovers
        shutil.rmtree(old, ignore_errors=True)
    print(f"debroot: building {ready} from {MIRROR} (a few minutes)", file=log, flush=True)
    try:
        _step(log, "debootstrap", "--variant=minbase", "--components=main", suite_of(suite), str(building),
              MIRROR)
        # Services never start in the root, neither now nor later; Postfix is configured by the tests.
        policy = building / "usr" / "sbin" / "policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        (building / "etc" / "apt" / "apt.conf.d" / "90adaptive").write_text(
            'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n')
        selections = "postfix postfix/main_mailer_type select No configuration\n"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
        in_root = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                   'mount -t proc proc "$1/proc" && exec chroot "$@"', "sh", str(building)]
        _step(log, *in_root, "debconf-set-selections", input=selections, env=env)
        _step(log, *in_root, "apt-get", "update", "-q", env=env)
        if PACKAGES[suite]:
            _step(log, *in_root, "apt-get", "install", "-y", "-q", *PACKAGES[suite], env=env)
        if suite in DOWNLOADS:      # the lists and the .debs kept: apt installs from them offline
            _step(log, *in_root, "apt-get", "install", "-y", "-q", "--download-only", *DOWNLOADS[suite], env=env)
        else:
            _step(log, *in_root, "apt-get", "clean", env=env)
            for lists in (building / "var" / "lib" / "apt" / "lists").glob("*_Packages"):
                lists.unlink()
        # Stamped, then renamed into place in one step: a root without its stamp is never used.
        (building / ".complete").write_text(
            f"suite {suite}\nmirror {MIRROR}\npackages {' '.join(PACKAGES[suite])}\n"
            f"built {time.strftime('%Y-%m-%dT%H:%M:%S%z')} in {time.monotonic() - started:.0f} s\n")
        if ready.exists():              # a root renamed in without its stamp: impossible, but not kept
            shutil.rmtree(ready)
        building.rename(ready)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    print(f"debroot: {ready} built in {time.monotonic() - started:.0f} s", file=log, flush=True)


def _step(log, *cmd: str, input: str | None = None, env: dict | None = None) -> None:
    done = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RootError(f"{shlex.join(cmd)}: exit {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")


def _remove_stale(suite: str, keep: Path) -> None:
    """Roots of the same suite with another package list (the cache keeps one per suite)."""
    for old in CACHE.glob(f"{suite}-{'?' * 12}"):     # not trixie-fresh-* for trixie
        if old != keep and old.is_dir() and (old / ".complete").exists():
            shutil.rmtree(old, ignore_errors=True)


def version(root_: Path, package: str) -> str:
    """The version of `package` installed in the root, read from its dpkg status."""
    status = (root_ / "var" / "lib" / "dpkg" / "status").read_text()
    for para in status.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in para.splitlines() if ": " in line and not line[0].isspace())
        if lines.get("Package") == package and "installed" in lines.get("Status", ""):
            return lines.get("Version", "")
    return ""


def users(root_: Path) -> dict[str, tuple[int, int]]:
    """The root's users: name -> (uid, gid), from its own /etc/passwd (not the host's)."""
    found = {}
    for line in (root_ / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 4:
            found[fields[0]] = (int(fields[2]), int(fields[3]))
    return found


def chroot_command(root_: Path, command: list[str], binds: Iterable[Path] = (), cwd: Path | None = None) -> list[str]:
    """`command` as a command line that runs it chrooted in `root_`, in a mount namespace of its own
    (see the module): `binds` are directories of the host seen at the same paths inside, read-write;
    `cwd` the directory it starts in (else /). The command's pid is the one of the command line
    (each step execs the next), so a signal to it reaches the command. Prefix it with
    `ip netns exec NS` to run it in a network namespace too."""
    scratch = CACHE / "mnt"
    scratch.mkdir(parents=True, exist_ok=True)
    if cwd is not None:
        command = ["sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *command]
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _ENTER, "sh",
            str(root_), str(scratch), *(str(Path(b).resolve()) for b in binds), "--", *command]


def run(root_: Path, command: list[str], binds: Iterable[Path] = (), cwd: Path | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(chroot_command(root_, command, binds, cwd), **kwargs)


class Machine:
    """A root run as a machine of its own for the length of a test: one process holds a private mount
    namespace (the overlay, /run, /tmp) for it, and every `run` enters that namespace and root, so
    what one command writes (an installed package, a daemon's socket in /run) the next one sees.

        with Machine(root("bookworm-fresh"), netns="adt-x-srv", binds=[debs]) as box:
            box.run(["apt-get", "install", "-y", f"{debs}/adaptive_0.1.0_all.deb"])

    `netns` puts it in a network namespace (the kernel's firewall there is the machine's own). Leaving
    ends every process left in it; the overlay's writes go with the namespace.
    """

    def __init__(self, root_: Path, netns: str | None = None, binds: Iterable[Path] = ()):
        self.root = root_
        self.netns = netns
        self.binds = list(binds)
        self._holder: subprocess.Popen | None = None

    def __enter__(self) -> Machine:
        command = chroot_command(self.root, ["sleep", "infinity"], self.binds)
        if self.netns:
            command = ["ip", "netns", "exec", self.netns, *command]
        self._holder = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        comm = Path(f"/proc/{self._holder.pid}/comm")
        while comm.read_text().strip() != "sleep":      # exec'd its way through unshare, sh and chroot
            if self._holder.poll() is not None:
                raise RootError(f"the machine of {self.root} did not start: {self._holder.stderr.read()}")
            if time.monotonic() > deadline:
                raise RootError(f"the machine of {self.root} did not start in 30 s")
            time.sleep(0.02)
        return self

    def command(self, command: list[str]) -> list[str]:
        """`command` as a command line run in the machine (its mounts, root, network), from /."""
        assert self._holder is not None
        enter = ["nsenter", "--target", str(self._holder.pid), "--mount", "--root", "--wd"]
        if self.netns:
            enter.append("--net")
        return [*enter, "--", "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8",
                "HOME=/root", "DEBIAN_FRONTEND=noninteractive", *command]

    def run(self, command: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 600)
        return subprocess.run(self.command(command), **kwargs)

    def popen(self, command: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(command), **kwargs)

    def __exit__(self, *exc) -> None:
        if self._holder is None:
            return
        # Every process of the machine: the holder's mount namespace is theirs alone.
        mine = os.readlink(f"/proc/{self._holder.pid}/ns/mnt")
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and proc.name != str(self._holder.pid):
                with contextlib.suppress(OSError):
                    if os.readlink(proc / "ns" / "mnt") == mine:
                        os.kill(int(proc.name), 9)
        self._holder.kill()
        self._holder.wait(timeout=30)
        self._holder.stderr.close()
        self._holder = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="debroot.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("build", "build the root if missing; print its path"),
                       ("path", "print where the root is or would be, without building")):
        sub.add_parser(name, help=text).add_argument("suite", choices=sorted(PACKAGES))
    p = sub.add_parser("run", help="run a command in the root (binding the current directory)")
    p.add_argument("suite", choices=sorted(PACKAGES))
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "path":
        print(path(args.suite))
        return 0
    try:
        ready = root(args.suite)
    except RootError as e:
        print(f"debroot.py: {e}", file=sys.stderr)
        return 1
    if args.command == "build":
        print(ready)
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    with contextlib.suppress(KeyboardInterrupt):
        return subprocess.run(chroot_command(ready, cmd or ["sh"], [Path.cwd()], Path.cwd())).returncode
    return 130


if __name__ == "__main__":
    sys.exit(main())
