"""`slipstream report` on real topics: an HTML page whose three embedded PNG plots decode, have the drawn size and
show content (not a blank canvas); one is saved to /tmp/slipstream-report-sample.png for a person to look at."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import typer
from matplotlib import image
from typer.testing import CliRunner

from slipstream.cli.monitor import report
from slipstream.monitoring.report import PLOTS
from slipstream.schemas.contracts import Contracts
from tests.conftest import Services
from tests.integration.monitoring.test_monitor_kafka import produce_stream
from tests.unit.monitoring.synthetic import generate

SAMPLE = Path("/tmp/slipstream-report-sample.png")  # noqa: S108 - a fixed place the lead looks at


def test_report_from_real_topics_has_plots_with_content(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    stream = generate(n=2000, days=10)
    produce_stream(services, contracts, stream)
    app = typer.Typer()
    app.command()(report)
    out = tmp_path / "report.html"
    env = {"KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers, "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix}
    result = CliRunner().invoke(app, ["--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    images = dict(re.findall(r"<img id=(\w+) [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page))
    assert sorted(images) == sorted(PLOTS)
    for name, encoded in images.items():
        png = base64.b64decode(encoded)
        pixels = image.imread(io.BytesIO(png), format="png")
        assert pixels.shape == (360, 900, 4), name  # figsize 9 x 3.6 in at 100 dpi, RGBA
        rgb = pixels[..., :3]
        not_white = float(np.mean(rgb.min(axis=2) < 0.9))
        coloured = float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 0.3))  # the plotted lines, not just axes
        assert 0.02 < not_white < 0.5, (name, not_white)
        assert coloured > 0.002, (name, coloured)
        if name == "performance":
            SAMPLE.write_bytes(png)
    assert "estimated" in page and "2018-08-10" in page and "Rank agreement" in page
