"""The metrics integrations are optional: ``import rwsplit`` loads neither prometheus_client nor
OpenTelemetry; each integration module loads only its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

_CHECK = """
import sys
{imports}
loaded = {{name.split(".")[0] for name in sys.modules}}
print(sorted(loaded & {{"prometheus_client", "opentelemetry"}}))
"""


@pytest.mark.parametrize(
    ("imports", "loaded"),
    [
        ("import rwsplit, rwsplit.integrations, rwsplit.aio", []),
        ("import rwsplit.integrations.prometheus", ["prometheus_client"]),
        ("import rwsplit.integrations.otel", ["opentelemetry"]),
    ],
)
def test_imports(imports: str, loaded: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHECK.format(imports=imports)], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == repr(loaded)
