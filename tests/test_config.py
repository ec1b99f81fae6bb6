"""The configuration: merging key by key, and errors that name the file, the key and the value."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest
from adaptive import config
from adaptive.config import ConfigError

SHIPPED = Path(__file__).resolve().parent.parent / "conf" / "adaptive.toml"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_config_loads():
    cfg = config.load([SHIPPED], dropins=None)
    assert cfg.sources["mail"].path == Path("/var/log/mail.log")
    assert cfg.nftables.table == "adaptive"
    assert cfg.metrics.listen == "127.0.0.1:9469"


def test_shipped_config_documents_every_key_with_its_default():
    """The shipped file is the manual: every key of every section appears, set to its default."""
    text = SHIPPED.read_text()
    defaults = config.Config()
    for f in dataclasses.fields(config.Config):
        if f.name in ("files", "sources"):
            continue
        section = getattr(defaults, f.name)
        for key in dataclasses.fields(section):
            assert re.search(rf"^#? ?{key.name} = ", text, re.M), f"[{f.name}] {key.name} undocumented"
    loaded = config.load([SHIPPED], dropins=None)
    for f in dataclasses.fields(config.Config):
        if f.name not in ("files", "sources"):
            assert getattr(loaded, f.name) == getattr(defaults, f.name), f"[{f.name}] differs from default"
    for key in dataclasses.fields(config.SourceConfig):
        assert re.search(rf"^#? ?{key.name} = ", text, re.M), f"[sources.NAME] {key.name} undocumented"


def test_later_files_override_key_by_key(tmp_path):
    base = write(tmp_path, "a.toml", """
[sources.mail]
path = "/var/log/mail.log"
[metrics]
listen = "127.0.0.1:9469"
[allowlist]
addresses = ["192.0.2.1"]
""")
    local = write(tmp_path, "b.toml", """
[sources.mail]
start = "beginning"
[sources.dovecot]
path = "/var/log/dovecot.log"
[allowlist]
addresses = ["198.51.100.0/24"]
""")
    cfg = config.load([base, local], dropins=None)
    assert cfg.sources["mail"].path == Path("/var/log/mail.log")   # kept from a.toml
    assert cfg.sources["mail"].start == "beginning"                # overridden by b.toml
    assert cfg.sources["dovecot"].path == Path("/var/log/dovecot.log")
    assert cfg.metrics.listen == "127.0.0.1:9469"
    # arrays are replaced whole, not appended
    assert cfg.allowlist.addresses == (ipaddress.ip_network("198.51.100.0/24"),)


def test_dropins_are_read_after_the_main_file_in_name_order(tmp_path):
    main = write(tmp_path, "main.toml", '[nftables]\ntable = "main"\n')
    dropins = tmp_path / "adaptive.d"
    dropins.mkdir()
    write(dropins, "20-late.toml", '[nftables]\ntable = "late"\n')
    write(dropins, "10-early.toml", '[nftables]\ntable = "early"\n[metrics]\nlisten = ""\n')
    write(dropins, "ignored.conf", '[nftables]\ntable = "never"\n')
    cfg = config.load([main], dropins=dropins)
    assert cfg.nftables.table == "late"
    assert cfg.metrics.listen == ""
    assert cfg.files == (main, dropins / "10-early.toml", dropins / "20-late.toml")


@pytest.mark.parametrize("text, key, value", [
    ('[metrics]\nlisten = "localhost"\n', "metrics.listen", '"localhost"'),
    ('[metrics]\nlisten = 9469\n', "metrics.listen", "9469"),
    ('[nftables]\ntable = "bad table"\n', "nftables.table", '"bad table"'),
    ('[allowlist]\naddresses = ["192.0.2.300"]\n', "allowlist.addresses", "192.0.2.300"),
    ('[allowlist]\naddresses = [5]\n', "allowlist.addresses", "5"),
    ('[sources.mail]\npath = "/x"\nstart = "middle"\n', "sources.mail.start", '"middle"'),
    ('[sources.mail]\npth = "/x"\n', "sources.mail.pth", "unknown key"),
    ('[sources.other]\nstart = "end"\n', "sources.other.path", "required"),
    ('[metricz]\nlisten = ""\n', "metricz", "unknown section"),
    ('[state]\npath = ""\n', "state.path", '""'),
    # The kernel refuses a timeout past about 584 years, and a state that held one failed every start.
    ('[decisions]\nban_max = 100000000000\n', "decisions.ban_max", "ten years"),
    ('[allowlist]\naddresses = ["0.0.0.0/0"]\n', "allowlist.addresses", "too much of the Internet"),
    ('[scoring]\nslow_threshold = 0.000001\n', "scoring.slow_threshold", "a single typo bans"),
    ('[scoring]\nmax_sources = 1000000000000\n', "scoring.max_sources", "10,000,000"),
    # Two sources on one file read every line twice: three failures counted as six.
    ('[sources.again]\npath = "/var/log/../log/mail.log"\n', "sources.again", "the same file as sources.mail"),
    ('[allowlist]\naddresses = ["10.0.0.0/8", "::/1"]\n', "allowlist.addresses", "at most /7"),
    ('[decisions]\nban_base = 400000000\n', "decisions.ban_base", "ten years"),
    ('[decisions.reasons.slow]\nban_max = 100000000000\n', "decisions.reasons", "ten years"),
    # Durations as the command line takes them; a bad one is said with the forms that are.
    ('[scoring]\nhalf_life = "1x"\n', "scoring.half_life", '"1x"'),
    ('[scoring]\nhalf_life = "1 h"\n', "scoring.half_life", "numbers with s, m, h, d or w"),
    ('[decisions]\nban_max = "4000d"\n', "decisions.ban_max", "at most 3650d"),
    ('[decisions]\nban_base = "permanent"\n', "decisions.ban_base", '"permanent"'),
    ('[decisions]\nsubnet_window = 1.5\n', "decisions.subnet_window", "whole seconds or a duration"),
    ('[nftables]\nreconcile_every = "0s"\n', "nftables.reconcile_every", "longer than zero"),
    ('[nftables]\nreconcile_every = true\n', "nftables.reconcile_every", 'or a duration ("90s"'),
    ('[decisions.reasons.slow]\nban_base = "soon"\n', "decisions.reasons", "'soon' is not a duration"),
])
def test_errors_name_file_key_and_value(tmp_path, text, key, value):
    good = write(tmp_path, "good.toml", '[sources.mail]\npath = "/var/log/mail.log"\n')
    bad = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        config.load([good, bad], dropins=None)
    message = str(info.value)
    assert str(bad) in message and key in message and value in message, message


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    bad = write(tmp_path, "bad.toml", '[metrics]\nlisten = "x"\n[nftables]\ntable = ""\n')
    with pytest.raises(ConfigError) as info:
        config.load([bad], dropins=None)
    assert len(info.value.problems) == 2


def test_toml_syntax_error_names_file_and_line(tmp_path):
    bad = write(tmp_path, "bad.toml", '[metrics]\nlisten = "127.0.0.1:9469\n')
    with pytest.raises(ConfigError) as info:
        config.load([bad], dropins=None)
    assert str(bad) in str(info.value) and "line 2" in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "nope.toml"))):
        config.load([tmp_path / "nope.toml"], dropins=None)


def adaptive(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adaptive", *args], capture_output=True, text=True)


def test_check_config_command_accepts_the_shipped_config():
    result = adaptive("check-config", "-c", str(SHIPPED), "--dropins", "")
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


def test_check_config_command_exits_2_naming_file_key_value(tmp_path):
    bad = write(tmp_path, "local.toml", '[metrics]\nlisten = "nowhere"\n')
    result = adaptive("check-config", "-c", str(SHIPPED), "-c", str(bad), "--dropins", "")
    assert result.returncode == 2
    assert f"{bad}: metrics.listen = \"nowhere\"" in result.stderr, result.stderr


def test_a_configuration_with_no_source_is_refused_by_check_config_and_run(tmp_path):
    alone = write(tmp_path, "alone.toml", '[metrics]\nlisten = ""\n')
    for command in ("check-config", "run"):
        result = adaptive(command, "-c", str(alone), "--dropins", "")
        assert result.returncode == 2 and "no [sources.NAME] section: nothing to follow" in result.stderr, result


def test_check_config_refuses_a_metrics_address_not_of_this_host(tmp_path):
    local = write(tmp_path, "local.toml", '[metrics]\nlisten = "192.0.2.250:9469"\n')
    result = adaptive("check-config", "-c", str(SHIPPED), "-c", str(local), "--dropins", "")
    assert result.returncode == 1 and "cannot listen on 192.0.2.250" in result.stderr, result


def test_check_config_reports_broken_filters(tmp_path):
    filters = tmp_path / "filters"
    filters.mkdir()
    write(filters, "x.toml", '[filter]\nfamily = "postfix"\nkeywords = ["a"]\n[[rule]]\nid = "r"\n'
                             'kind = "nonsense"\npattern = "(?P<ip>x)"\n')
    local = write(tmp_path, "local.toml", f'[filters]\ndirectory = "{filters}"\n')
    result = adaptive("check-config", "-c", str(SHIPPED), "-c", str(local), "--dropins", "")
    assert result.returncode == 2
    assert "x.toml" in result.stderr and "nonsense" in result.stderr, result.stderr


def test_a_prefix_scoring_or_decisions_bans_needs_a_ban_set(tmp_path):
    local = write(tmp_path, "local.toml", "[decisions]\nsubnet_ipv6_prefix = 40\n")
    with pytest.raises(ConfigError) as info:
        config.load([SHIPPED, local], dropins=None)
    assert f"{local}: decisions.subnet_ipv6_prefix = 40: no ban set takes /40" in str(info.value)


def test_an_error_inside_a_table_names_the_file_that_changed_it(tmp_path):
    local = write(tmp_path, "local.toml", "[decisions.reasons.slow]\nban_base = -5\n")
    with pytest.raises(ConfigError) as info:
        config.load([SHIPPED, local], dropins=None)
    assert str(local) in str(info.value) and str(SHIPPED) not in str(info.value)


def test_a_dropin_turns_off_a_shipped_source_and_adds_its_own(tmp_path):
    dropins = tmp_path / "adaptive.d"
    dropins.mkdir()
    write(dropins, "10-local.toml", '[sources.mail]\nenabled = false\n\n'
                                    '[sources.dovecot]\npath = "/var/log/dovecot.log"\n')
    loaded = config.load([SHIPPED], dropins=dropins)
    assert list(loaded.sources) == ["dovecot"] and loaded.sources["dovecot"].enabled


def test_a_source_turned_off_needs_no_path_but_a_flag_that_is_one(tmp_path):
    off = write(tmp_path, "off.toml", '[sources.spare]\nenabled = false\n')
    assert "spare" not in config.load([SHIPPED, off], dropins=None).sources
    odd = write(tmp_path, "odd.toml", '[sources.mail]\nenabled = "no"\n')
    with pytest.raises(ConfigError) as info:
        config.load([SHIPPED, odd], dropins=None)
    assert f'{odd}: sources.mail.enabled = "no"' in str(info.value)


def test_turning_off_the_only_source_leaves_nothing_to_follow(tmp_path):
    off = write(tmp_path, "off.toml", '[sources.mail]\nenabled = false\n')
    result = adaptive("check-config", "-c", str(SHIPPED), "-c", str(off), "--dropins", "")
    assert result.returncode == 2 and "nothing to follow" in result.stderr, result


def test_check_config_ready_wants_a_log_to_read(tmp_path):
    log = tmp_path / "mail.log"
    local = write(tmp_path, "local.toml", f'[sources.mail]\npath = "{log}"\nfallback = ""\n[metrics]\nlisten = ""\n')
    waiting = adaptive("check-config", "--ready", "-c", str(SHIPPED), "-c", str(local), "--dropins", "")
    assert waiting.returncode == 1 and f"no source has a log to read yet ({log} missing)" in waiting.stderr, waiting
    assert adaptive("check-config", "-c", str(SHIPPED), "-c", str(local), "--dropins", "").returncode == 0
    log.write_text("")
    ready = adaptive("check-config", "--ready", "-c", str(SHIPPED), "-c", str(local), "--dropins", "")
    assert ready.returncode == 0 and "configuration ok" in ready.stdout, ready


# Every key that takes seconds, as the issue has it: ban lengths, windows, half-lives, the reconcile.
SECONDS = {
    "nftables": ["reconcile_every"],
    "decisions": ["ban_base", "ban_max", "lookback", "subnet_window"],
    "scoring": ["half_life", "slow_half_life", "pair_window", "spam_window", "harvest_window", "dictionary_window",
                "account_window"],
}


def test_every_key_that_takes_seconds_takes_a_duration_and_plain_numbers_are_still_seconds(tmp_path):
    for section, keys in SECONDS.items():
        for key in keys:
            for raw, seconds in (('"2h"', 7200), ("7200", 7200), ('"1h30m"', 5400), ('"1w"', 604800),
                                 ('"90s"', 90), ('"1.5s"', None)):
                local = write(tmp_path, "local.toml", f"[{section}]\n{key} = {raw}\n")
                value = getattr(getattr(config.load([SHIPPED, local], dropins=None), section), key)
                if seconds is None:     # a fraction: a whole-seconds key rounds it up
                    assert value == (2 if isinstance(value, int) else 1.5), (section, key)
                else:
                    assert value == seconds and type(value) is type(getattr(getattr(config.Config(), section), key))
    local = write(tmp_path, "local.toml", '[decisions]\nlookback = "0s"\nreasons = { slow = { ban_base = "1d", '
                                          'ban_max = "2w", lookback = "0" } }\n')
    decisions = config.load([SHIPPED, local], dropins=None).decisions
    assert decisions.lookback == 0
    assert decisions.profile("slow") == config.BanProfile(86400, 4.0, 1209600, 0)


def test_no_key_that_reads_as_seconds_is_left_without_durations():
    """A key named like a length of time takes durations; the list above is the issue's, this keeps it whole."""
    named = re.compile(r"(window|half_life|_every|lookback|ban_base|ban_max|timeout|interval|_age)$")
    for f in dataclasses.fields(config.Config):
        if f.name in ("files", "sources"):
            continue
        for key in dataclasses.fields(getattr(config.Config(), f.name)):
            if named.search(key.name):
                assert key.name in SECONDS.get(f.name, []), f"[{f.name}] {key.name} takes no duration"
