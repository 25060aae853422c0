"""pipeline/runners/layout.py: deciding NCHW vs NHWC per tensor, and saying how it was decided."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.runners.layout import AS_IS, Layout, candidates, channel_last_perm, decide, resolve_by_probe

NHWC = (0, 2, 3, 1)


@pytest.mark.parametrize("prefer_channel_last", [True, False])
def test_distinct_shapes_decide_channel_last_by_shape(prefer_channel_last):
    layout = decide((1, 3, 64, 64), (1, 64, 64, 3), prefer_channel_last)
    assert (layout.perm, layout.decided_by, layout.ambiguous, layout.name) == (NHWC, "shape", False, "channel-last")


def test_identical_rank4_shapes_that_only_fit_as_is_decide_as_is_by_shape():
    layout = decide((1, 3, 64, 32), (1, 3, 64, 32), prefer_channel_last=True)
    assert (layout.perm, layout.decided_by, layout.ambiguous, layout.name) == (None, "shape", False, "as-is")


def test_identical_rank2_shapes_are_as_is_by_rank():
    layout = decide((4, 10), (4, 10), prefer_channel_last=True)
    assert layout == AS_IS
    assert (layout.perm, layout.decided_by, layout.ambiguous) == (None, "rank", False)


@pytest.mark.parametrize("prefer_channel_last, perm", [(True, NHWC), (False, None)])
def test_shape_that_reads_the_same_both_ways_is_ambiguous_and_decided_by_convention(prefer_channel_last, perm):
    layout = decide((2, 3, 3, 3), (2, 3, 3, 3), prefer_channel_last)
    assert (layout.perm, layout.decided_by, layout.ambiguous) == (perm, "convention", True)
    assert "reads the same in both layouts" in layout.note


@pytest.mark.parametrize("logical, backend", [((1, 3, 64, 64), (1, 32, 32, 3)), ((4, 10), (10, 4))])
def test_shape_that_fits_neither_layout_is_unresolved(logical, backend):
    layout = decide(logical, backend, prefer_channel_last=True)
    assert (layout.perm, layout.decided_by, layout.ambiguous) == (None, "unresolved", True)
    assert f"fits neither {list(logical)}" in layout.note


def test_candidates_lists_every_fitting_layout():
    assert [c.perm for c in candidates((2, 3, 3, 3), (2, 3, 3, 3))] == [None, NHWC]
    assert [c.perm for c in candidates((1, 3, 5), (1, 5, 3))] == [(0, 2, 1)]
    assert candidates((1, 3, 5), (1, 3, 6)) == []


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 3, 5, 7), (2, 3, 5, 7, 4)])
def test_to_backend_moves_channels_last_and_to_logical_undoes_it(shape):
    layout = Layout(channel_last_perm(len(shape)), "shape")
    logical = np.random.default_rng(0).standard_normal(shape)
    backend = layout.to_backend(logical)
    assert backend.shape == (shape[0], *shape[2:], shape[1])
    np.testing.assert_array_equal(np.moveaxis(logical, 1, -1), backend)
    np.testing.assert_array_equal(layout.to_logical(backend), logical)


def test_as_is_layout_leaves_arrays_alone():
    array = np.arange(6).reshape(2, 3)
    assert AS_IS.to_backend(array) is array and AS_IS.to_logical(array) is array


def test_json_round_trip():
    for layout in (Layout(NHWC, "probe", True, "note"), Layout(None, "shape")):
        assert Layout.from_json(layout.to_json()) == layout


def test_probe_picks_the_channel_last_candidate_that_matches():
    reference = np.random.default_rng(0).standard_normal((2, 3, 3, 3))
    fits = candidates(reference.shape, reference.shape)
    backend = np.transpose(reference, NHWC) + 1e-6
    layout = resolve_by_probe(reference, backend, fits)
    assert (layout.perm, layout.decided_by, layout.ambiguous) == (NHWC, "probe", True)
    assert "channel-last matched the reference" in layout.note


def test_probe_picks_the_as_is_candidate_that_matches():
    reference = np.random.default_rng(1).standard_normal((2, 3, 3, 3))
    layout = resolve_by_probe(reference, reference.copy(), candidates(reference.shape, reference.shape))
    assert (layout.perm, layout.decided_by) == (None, "probe")


def test_probe_that_cannot_tell_the_layouts_apart_is_unresolved():
    reference = np.ones((2, 3, 3, 3))  # reads the same in both layouts, values too
    layout = resolve_by_probe(reference, reference.copy(), candidates(reference.shape, reference.shape))
    assert (layout.decided_by, layout.ambiguous) == ("unresolved", True)
    assert layout.note.endswith("the probe was not decisive")


def test_probe_is_not_decisive_when_both_candidates_are_about_as_wrong():
    rng = np.random.default_rng(2)
    reference = rng.standard_normal((2, 3, 3, 3))
    unrelated = rng.standard_normal((2, 3, 3, 3))
    layout = resolve_by_probe(reference, unrelated, candidates(reference.shape, reference.shape))
    assert layout.decided_by == "unresolved"


@pytest.mark.parametrize("backend, perm, ambiguous", [
    ((None, None, None, 3), (0, 2, 3, 1), False),  # dynamic batch, height and width: only channel-last fits
    ((None, 3, 64, 64), None, False),
    ((None, None, None, None), (0, 2, 3, 1), True),  # anything fits: ambiguous, the probe decides
])
def test_a_dynamic_tf_dimension_fits_any_size(backend, perm, ambiguous):
    layout = decide((1, 3, 64, 64), backend, prefer_channel_last=True)
    assert (layout.perm, layout.ambiguous) == (perm, ambiguous)


def test_a_dynamic_dimension_still_needs_the_same_rank():
    assert candidates((1, 10), (None, 10, 1)) == []
