"""Debian tools the tests drive as commands, installed with apt-get on first use.

The README's test command must pass on a new machine, so a missing tool (headless Chromium
for tests/test_report.py and tests/test_embedded_demo.py, the Compose CLI for tests/test_compose.py, Prometheus and its
promtool for the metrics tests) is installed here rather than being a prerequisite. When it
cannot be installed the test fails with the command to run: it never skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

#: Set once `apt-get update` has run in this session (one index refresh serves every install).
_apt_updated = False
#: name -> the path found or installed, or the failure message (a failed install is not retried).
_resolved: dict[str, str | BaseException] = {}


def _announce(config: pytest.Config | None, line: str) -> None:
    """Write to the terminal past pytest's output capture, so the install shows while it runs."""
    text = f"\n[tests/support/debian.py] {line}"
    capture = config.pluginmanager.getplugin("capturemanager") if config is not None else None
    if capture is None:
        print(text, file=sys.stderr, flush=True)
        return
    with capture.global_and_fixture_disabled():
        print(text, file=sys.stderr, flush=True)


def _apt_get(*args: str) -> None:
    """Run apt-get non-interactively, through `sudo -n` when not root (never prompts)."""
    command = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", *args]
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise RuntimeError("not root and sudo is not installed")
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=540)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(command)}` exited with {done.returncode}: {(done.stderr or done.stdout)[-1500:]}"
        )


def _install(name: str, package: str, why: str, config: pytest.Config | None) -> str:
    global _apt_updated
    if shutil.which("apt-get") is None:
        raise RuntimeError("apt-get is not available (not a Debian-based machine)")
    _announce(config, f"`{name}` is missing: installing Debian's `{package}` with apt-get ({why})")
    if not _apt_updated:
        _apt_get("update", "-qq")
        _apt_updated = True
    _apt_get("install", "-y", "-qq", "--no-install-recommends", package)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"`{package}` installed but `{name}` is still not on PATH")
    _announce(config, f"installed `{package}`: {found}")
    return found


def debian_tool(name: str, package: str, why: str, config: pytest.Config | None = None) -> str:
    """The path of command ``name``, installing Debian package ``package`` once if it is missing.

    Resolved once per session; a failure fails every test that needs the tool, with the
    instruction to install it by hand. ``config`` lets the install notice pass pytest's capture.
    """
    if name not in _resolved:
        found = shutil.which(name)
        if found is not None:
            _resolved[name] = found
        else:
            try:
                _resolved[name] = _install(name, package, why, config)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _resolved[name] = exc
    outcome = _resolved[name]
    if isinstance(outcome, BaseException):
        pytest.fail(
            f"`{name}` is required ({why}) and could not be installed: {outcome}\n"
            f"Install it with `sudo apt-get install -y --no-install-recommends {package}` and rerun.",
            pytrace=False,
        )
    return outcome


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> str:
    """Headless Chromium, which renders the static report to check its charts draw."""
    return debian_tool(
        "chromium",
        "chromium",
        "tests/test_report.py and tests/test_embedded_demo.py screenshot the static report",
        request.config,
    )


@pytest.fixture(scope="session")
def compose_cli(request: pytest.FixtureRequest) -> list[str]:
    """The Compose CLI: the `docker compose` plugin when it works, else Debian's `docker-compose`
    (Debian does not package the plugin); `config` needs no Docker engine."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return [
        debian_tool(
            "docker-compose", "docker-compose", "tests/test_compose.py validates docker-compose.yml", request.config
        )
    ]


@pytest.fixture(scope="session")
def promtool(request: pytest.FixtureRequest) -> str:
    """Prometheus's own checker: the scrape configuration and the pipeline dashboard's PromQL."""
    return debian_tool(
        "promtool", "prometheus", "tests check the Prometheus config and the dashboard's PromQL", request.config
    )


@pytest.fixture(scope="session")
def prometheus_server(request: pytest.FixtureRequest) -> str:
    """The Prometheus server, scraping a real receiver and worker in tests/test_pipeline_e2e.py."""
    return debian_tool(
        "prometheus", "prometheus", "tests/test_pipeline_e2e.py scrapes the worker with Prometheus", request.config
    )
