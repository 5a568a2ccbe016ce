"""The index function runs encoder models in throughput mode; predict keeps latency mode."""

from __future__ import annotations

from tests.infra.conftest import Synthesized
from tests.infra.test_stacks import function


def test_index_embeds_in_throughput_mode_and_predict_in_latency_mode(synthesized: Synthesized) -> None:
    _, index = function(synthesized, "index")
    assert index["Environment"]["Variables"]["HFLAMBDA_ORT_MODE"] == "throughput"
    for name in ("predict", "warmup"):
        _, props = function(synthesized, name)
        # unset: the settings default, latency
        assert "HFLAMBDA_ORT_MODE" not in props["Environment"]["Variables"]
