"""Switches saved by older code (tests/fixtures/switch_v1, written by its make.py at the commit routes.json names)
still load and route as they did: the same task or rejection, the same confidence, for every stored query."""

import json
from pathlib import Path

import pytest

from switch import SwitchNetwork

FIXTURE = Path(__file__).parent / "fixtures" / "switch_v1"
EXPECTED = json.loads((FIXTURE / "routes.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(EXPECTED["routes"]))
def test_a_switch_saved_by_older_code_loads_and_routes_as_it_did(name):
    routes = SwitchNetwork.load(FIXTURE / name).predict(EXPECTED["queries"])
    expected = EXPECTED["routes"][name]
    assert [label for label, _ in routes] == [label for label, _ in expected]
    # bit-identical on the machine that saved it; a CPU with other vector units may round the last digits apart
    assert [confidence for _, confidence in routes] == pytest.approx([c for _, c in expected], rel=1e-6, abs=1e-7)


def test_the_stored_switches_cover_rejection_in_several_views_and_rejected_queries():
    metas = {name: json.loads((FIXTURE / name / "switch.json").read_text()) for name in EXPECTED["routes"]}
    assert all(meta["reject"] for meta in metas.values())
    assert metas["calibrated_two_views"]["calibrated"] and metas["calibrated_two_views"]["reject_also"]
    assert metas["leave_one_out_two_views"]["reject_also"] and not metas["leave_one_out_two_views"]["calibrated"]
    assert metas["euclidean"]["reject_metric"] == "euclidean"
    for routes in EXPECTED["routes"].values():
        assert None in [label for label, _ in routes] and len({label for label, _ in routes}) == 3
