"""The SDK installs alone: its distribution (sdk/pyproject.toml) pulls in nothing, and works
without the server package or any of the server's dependencies importable.

pip builds it offline (``--no-index``, with this environment's setuptools), so a dependency
declared by mistake cannot be resolved and fails the install here; the installed copy then
runs in a Python without site-packages and exports spans to a loopback receiver.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.scripted_receiver import ScriptedReceiver

SDK_SOURCE = Path(__file__).resolve().parents[1] / "sdk"
#: Packages of the server the SDK must never need (the issue's list and the settings').
SERVER_MODULES = ("spanline", "chdb", "pandas", "pyarrow", "faust", "numpy", "pydantic", "pydantic_settings", "kafka")

USE_THE_INSTALLED_COPY = """
import sys
sys.path.insert(0, sys.argv[1])
for name in {server_modules!r}:
    try:
        __import__(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"{{name}} is importable: this is no clean interpreter")
import spanline_sdk as sdk
assert sdk.__file__.startswith(sys.argv[1]), sdk.__file__
tracer = sdk.configure("standalone", endpoint=sys.argv[2], api_key="sl-standalone")
with sdk.request(name="root", user_id="u-1"):
    with sdk.llm_call(provider="openai", model="gpt-4o-mini", input_tokens=5, output_tokens=1):
        pass
assert tracer.flush(10), tracer.stats()
sdk.shutdown()
loaded = sorted(name for name in {server_modules!r} if name in sys.modules)
assert not loaded, loaded
print(tracer.stats()["sent"])
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install ./sdk`` into a fresh target directory, built from a copy of the sources."""
    root = tmp_path_factory.mktemp("sdk-distribution")
    source = shutil.copytree(
        SDK_SOURCE, root / "sdk", ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    target = root / "site"
    offline = ["--no-index", "--no-build-isolation"]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *offline, "--target", str(target), str(source)],
        capture_output=True,
        text=True,
        env={name: value for name, value in os.environ.items() if name != "PIP_FIND_LINKS"},  # nothing local either
    )
    assert done.returncode == 0, f"pip could not install the SDK on its own:\n{done.stdout}\n{done.stderr}"
    return target


@pytest.fixture
def receiver() -> Iterator[ScriptedReceiver]:
    server = ScriptedReceiver()
    yield server
    server.close()


def test_the_distribution_installs_nothing_but_itself(installed: Path) -> None:
    assert sorted(path.name for path in installed.iterdir()) == ["spanline_sdk", "spanline_sdk-0.1.0.dist-info"]
    metadata = (installed / "spanline_sdk-0.1.0.dist-info" / "METADATA").read_text()
    requirements = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requirements == ['Requires-Dist: kafka-python[crc32c,lz4]>=3.0; extra == "kafka"']
    assert (installed / "spanline_sdk" / "py.typed").exists()


def test_the_installed_sdk_exports_without_the_server(installed: Path, receiver: ScriptedReceiver) -> None:
    script = USE_THE_INSTALLED_COPY.format(server_modules=SERVER_MODULES)
    done = subprocess.run(
        [sys.executable, "-S", "-I", "-c", script, str(installed), receiver.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert sorted(span["name"] for span in receiver.delivered) == ["chat", "root"]
