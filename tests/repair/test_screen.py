"""pipeline/repair/screen.py: which layout candidates the layer-model screen turns down before a conversion."""
from __future__ import annotations

from pipeline.artifacts.repair_record import Divergence
from pipeline.repair.screen import Screened


def departure(error_out: float | None, outputs_error: dict | None = None) -> Divergence:
    return Divergence("saved_model", "node_transpose_3", "Transpose", "model.block.0", 1e-7, error_out, "own",
                      outputs_error=outputs_error)


def test_a_departure_left_in_place_or_moved_earlier_is_turned_down():
    assert Screened(departure(0.5), 12).turned_down(12, 0.5 / 100)
    assert Screened(departure(0.5), 7).turned_down(12, 0.5 / 100)
    assert "screened out" in Screened(departure(0.5), 12).reason(12) and "node_transpose_3" in Screened(departure(0.5), 12).reason(12)


def test_a_departure_moved_later_removed_or_cut_a_hundredfold_goes_on_to_a_real_conversion():
    assert not Screened(departure(0.5), 13).turned_down(12, 0.5 / 100)  # later in the graph
    assert not Screened(None, -1).turned_down(12, 0.5 / 100)  # no tensor departs any more
    assert not Screened(departure(0.004), 12).turned_down(12, 0.5 / 100)  # one of two bugs at that node fixed
    assert not Screened(departure(None), 12).turned_down(12, 0.5 / 100)  # unmeasured: converted, not guessed


def test_a_later_departure_with_every_output_exactly_as_far_off_is_turned_down():
    # the nodes a candidate replaced are passed over in the comparison: a later departure alone proves nothing
    same = {"logits": 0.5730636, "features": 0.02}
    moved = Screened(departure(0.5, outputs_error=same), 13)
    assert moved.turned_down(12, 0.5 / 100, outputs_before=dict(same))
    assert "outputs stay as far from ONNX Runtime as before (max_abs 0.573)" in moved.reason(12, dict(same))
    assert not moved.turned_down(12, 0.5 / 100, outputs_before={**same, "features": 0.3})  # one branch fixed: converted
    assert not moved.turned_down(12, 0.5 / 100, outputs_before=None)  # not measured: converted


def test_the_reason_says_the_departure_stayed_when_it_did_even_with_the_outputs_unchanged():
    same = {"logits": 0.5730636}
    for position in (12, 7):  # in place, or earlier
        stayed = Screened(departure(0.5, outputs_error=same), position)
        assert stayed.turned_down(12, 0.5 / 100, outputs_before=dict(same))
        assert "still departs from ONNX Runtime at Transpose 'node_transpose_3'" in stayed.reason(12, dict(same))
