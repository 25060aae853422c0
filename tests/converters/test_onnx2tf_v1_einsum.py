"""onnx2tf's Einsum transpose search, screened with numpy: the pair of permutations its Keras models would
choose, and the same converted graph, with far fewer candidate models."""
from __future__ import annotations

import contextlib
import itertools
import math
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("onnx2tf")

from pipeline.converters import onnx2tf_v1, onnx2tf_v1_einsum  # noqa: E402
from pipeline.converters.onnx2tf_v1_einsum import Search, kept_permutations  # noqa: E402
from tests.converters.onnx2tf_graphs import converted_ops  # noqa: E402


def _searched_with_keras(search: Search, firsts=None, seconds=None) -> tuple[tuple | None, int]:
    """onnx2tf's loop itself (ops/Einsum.py) over `firsts` x `seconds` (every permutation by default): a Keras
    model per pair, skipped when it raises or its element count is not ONNX's, its dummy run and comparison;
    the pair it keeps (None: none, so the identity stays) and how many pairs it built."""
    from onnx2tf.utils.common_functions import dummy_tf_inference, onnx_tf_tensor_validation

    a, b = search.first, search.second
    firsts = list(itertools.permutations(range(a.ndim))) if firsts is None else firsts
    seconds = list(itertools.permutations(range(b.ndim))) if seconds is None else seconds
    best, best_error, built = None, sys.maxsize, 0
    for p1 in firsts:
        for p2 in seconds:
            built += 1
            try:
                in1 = tf_keras.Input(shape=a.shape[1:], batch_size=a.shape[0], name="dummy_input_1", dtype=a.dtype)
                in2 = tf_keras.Input(shape=b.shape[1:], batch_size=b.shape[0], name="dummy_input_2", dtype=b.dtype)
                out = tf.einsum(search.equation, tf.transpose(in1, list(p1)), tf.transpose(in2, list(p2)))
                if math.prod(d if d is not None else -1 for d in out.shape) != search.onnx_size:
                    continue
                model = tf_keras.Model(inputs=[in1, in2], outputs=[out])
                outputs = dummy_tf_inference(model=model, inputs=[in1, in2], verification_datas=[a, b])
                pairs = {("e", name): (search.expected, value) for name, value in outputs.items()}
                error = sum(v[2] for v in onnx_tf_tensor_validation(output_pairs=pairs, rtol=0.0, atol=0.0).values())
            except Exception:  # noqa: BLE001 (what onnx2tf's loop does with a pair that raises)
                continue
            if error < best_error:
                best, best_error = (p1, p2), error
                if best_error < 1e-3:
                    return best, built
    return best, built


RNG = np.random.default_rng(5)
Q = RNG.standard_normal((1, 2, 6, 4)).astype(np.float32)
K = RNG.standard_normal((1, 2, 5, 4)).astype(np.float32)
SCORES = "bhlk,bhtk->bhlt"


def _ort(equation: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Runtime's tensor stand-in: float32 arithmetic in numpy's own order (not TensorFlow's)."""
    return np.einsum(equation, a, b).astype(np.float32)


def _case(equation, a, b, expected) -> Search:
    return Search(equation, a, b, expected, expected.size)


BIG_Q, BIG_K = Q * 3000, K * 3000
ATTENTION = RNG.standard_normal((1, 2, 6, 5)).astype(np.float32)
CUBE_A, CUBE_B = (RNG.standard_normal((2, 2, 2, 2)).astype(np.float32) * s for s in (3000, 3000))
STOPS, TRIES_ALL = "stops early", "tries every pair"
CASES = {  # name: (the search, what onnx2tf's loop does on it); every permutation of a rank-4 input is a candidate (576 pairs)
    "the inputs as ONNX has them": (_case(SCORES, Q, K, _ort(SCORES, Q, K)), STOPS),
    "the first input transposed": (_case(SCORES, np.ascontiguousarray(Q.transpose(0, 2, 1, 3)), K, _ort(SCORES, Q, K)), STOPS),
    "large activations: float32 rounding alone is above 1e-3": (_case(SCORES, BIG_Q, BIG_K, _ort(SCORES, BIG_Q, BIG_K)), TRIES_ALL),
    "behind a layer converted wrong: nothing matches": (_case(SCORES, Q, K, RNG.standard_normal((1, 2, 6, 5)).astype(np.float32)),
                                                        TRIES_ALL),
    "every pair ties": (_case(SCORES, np.zeros_like(Q), np.zeros_like(K), np.full((1, 2, 6, 5), 3.0, np.float32)), TRIES_ALL),
    "ONNX's output is the TF output's transpose": (_case(SCORES, Q[:, :, :4], K[:, :, :4],
                                                         _ort(SCORES, Q[:, :, :4], K[:, :, :4]).transpose(0, 1, 3, 2).copy()), STOPS),
    "attention times values": (_case("bhlt,bhtv->bhlv", ATTENTION, K, _ort("bhlt,bhtv->bhlv", ATTENTION, K)), STOPS),
    "every axis of size 2 (every pair runs), nothing matches": (
        _case(SCORES, CUBE_A / 3000, CUBE_B / 3000, RNG.standard_normal((2, 2, 2, 2)).astype(np.float32)), TRIES_ALL),
    "every axis of size 2, large activations": (_case(SCORES, CUBE_A, CUBE_B, _ort(SCORES, CUBE_A, CUBE_B)), TRIES_ALL),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_screen_keeps_the_pair_the_keras_models_keep(case):
    search, loop = CASES[case]
    searched, searched_built = _searched_with_keras(search)
    assert (searched_built == 576) == (loop == TRIES_ALL)  # the case is what its name says
    firsts, seconds = kept_permutations(search)
    screened, screened_built = _searched_with_keras(search, firsts, seconds)
    assert screened == searched
    assert screened_built <= searched_built


@pytest.mark.parametrize("case", ["large activations: float32 rounding alone is above 1e-3", "every axis of size 2, large activations",
                                  "every axis of size 2 (every pair runs), nothing matches"])
def test_each_pairs_error_in_tensorflow_lies_in_the_interval_numpy_gives_it(case):
    """The screen's ground: TensorFlow's float32 einsum, compared as onnx2tf compares it, is within the bound of
    numpy's float64 one, for every pair numpy judges (576 where every axis has size 2)."""
    from onnx2tf.utils.common_functions import onnx_tf_tensor_validation

    search, _ = CASES[case]
    judged = [c for c in onnx2tf_v1_einsum._candidates(search) if c is not None and c.high < math.inf]
    assert judged
    for c in judged:
        computed = tf.einsum(search.equation, tf.transpose(search.first, c.first), tf.transpose(search.second, c.second)).numpy()
        error = onnx_tf_tensor_validation(output_pairs={("e", "t"): (search.expected, computed)}, rtol=0.0, atol=0.0)["e", "t"][2]
        assert c.low <= error <= c.high, (c, error)


def _candidate(low: float, high: float) -> onnx2tf_v1_einsum.Candidate:
    return onnx2tf_v1_einsum.Candidate((0,), (0,), low, high)


def test_the_pairs_kept_are_those_that_may_stop_the_search_or_be_its_smallest_error():
    kept = onnx2tf_v1_einsum._kept
    uncertain, certain, too_big = _candidate(9e-4, 1.1e-3), _candidate(1e-4, 2e-4), _candidate(2e-3, 3e-3)
    # the first pair certainly below 1e-3 ends the search: what comes after it never runs
    assert kept([too_big, uncertain, certain, _candidate(0.0, 1e-5)]) == [uncertain, certain]
    # nothing certainly below: every pair that may be below, or whose error may be the smallest, stays
    near, best, far = _candidate(4.0, 5.5), _candidate(4.5, 5.0), _candidate(5.1, 6.0)
    assert kept([far, near, best]) == [near, best]
    assert kept([far, near, best, uncertain]) == [uncertain]  # its error is below the others' whether it stops or not
    assert kept([far, _candidate(0.0, math.inf)]) == [far, _candidate(0.0, math.inf)]  # unjudged: stays, bounds nothing
    assert kept([]) == []


def test_the_screen_leaves_few_pairs_where_nothing_matches():
    """Behind a layer converted wrong onnx2tf tries every pair; the screen leaves the best and the few whose
    errors are as small within float32's rounding (8 of 576 where every axis has size 2)."""
    for case in ("behind a layer converted wrong: nothing matches", "every axis of size 2 (every pair runs), nothing matches"):
        firsts, seconds = kept_permutations(CASES[case][0])
        assert len(firsts) * len(seconds) <= 8, case


def _noisy_einsums(path):
    """q, k: x + RandomNormalLike(x), so ONNX Runtime's noise is not onnx2tf's dummy run's: no pair matches
    and each search tries all 576 pairs, as behind a layer converted wrong (a tiny CvT: 12 such Einsums)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 4])
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["noise"], seed=1.0), helper.make_node("Add", ["x", "noise"], ["q"]),
             helper.make_node("Einsum", ["q", "x"], ["s"], equation="bhlk,bhtk->bhlt"),
             helper.make_node("Einsum", ["s", "q"], ["y"], equation="bhlt,bhtv->bhlv")]
    model = helper.make_model(helper.make_graph(nodes, "noisy", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _converted(tmp_path, monkeypatch, screen: bool) -> tuple[list, int]:
    """The converted graph's einsums and transposes, and how many Keras models onnx2tf's Einsum built."""
    built = []
    real = tf_keras.Input
    monkeypatch.setattr(tf_keras, "Input", lambda *args, **kwargs: built.append(kwargs.get("name")) or real(*args, **kwargs))
    if not screen:
        monkeypatch.setattr(onnx2tf_v1, "einsum_search_screened", contextlib.nullcontext)
    onnx_path = tmp_path / "noisy.onnx"
    _noisy_einsums(onnx_path)
    ops = converted_ops(onnx_path, tmp_path / ("screened" if screen else "searched"), ("transpose", "einsum"))
    monkeypatch.undo()
    return ops, built.count("dummy_input_1")


def test_the_search_ends_on_the_same_pairs_with_far_fewer_candidate_models(tmp_path, monkeypatch):
    searched, searched_built = _converted(tmp_path, monkeypatch, screen=False)
    screened, screened_built = _converted(tmp_path, monkeypatch, screen=True)
    assert screened == searched
    assert sum("einsum" in op for op in screened) == 2
    assert searched_built == 2 * 576
    assert screened_built <= 2 * 4


def _permutations():
    return onnx2tf_v1_einsum._permutations()


def test_anywhere_else_permutations_is_itertools_own():
    permutations = _permutations()
    assert list(permutations(range(3))) == list(itertools.permutations(range(3)))
    assert list(permutations("ab", 1)) == [("a",), ("b",)]


def _frame_search(permutations, **frame) -> tuple[list, list]:
    """Both calls as onnx2tf's make_node makes them, from a frame whose locals hold `frame`'s values."""
    validation_data_1, validation_data_2 = frame["validation_data_1"], frame["validation_data_2"]  # noqa: F841
    equation, onnx_tensor_infos, onnx_output_shape = frame["equation"], frame["onnx_tensor_infos"], frame["onnx_output_shape"]  # noqa: F841
    tensor_1_candidate_for_transpositions = list(permutations(range(validation_data_1.ndim)))
    tensor_2_candidate_for_transpositions = list(permutations(range(validation_data_2.ndim)))
    return tensor_1_candidate_for_transpositions, tensor_2_candidate_for_transpositions


def _frame(**changed) -> dict:
    search = CASES["behind a layer converted wrong: nothing matches"][0]
    frame = {"validation_data_1": search.first, "validation_data_2": search.second, "equation": search.equation,
             "onnx_tensor_infos": {"s": search.expected}, "onnx_output_shape": list(search.expected.shape)}
    return {**frame, **changed}


def test_the_search_gets_the_screened_permutations_and_the_full_ones_where_the_screen_cannot_bound():
    everything = list(itertools.permutations(range(4)))
    firsts, seconds = _frame_search(_permutations(), **_frame())
    assert (firsts, seconds) == kept_permutations(CASES["behind a layer converted wrong: nothing matches"][0])
    assert len(firsts) < 24
    numpy_ints = [np.int64(d) for d in _frame()["onnx_output_shape"]]
    assert _frame_search(_permutations(), **_frame(onnx_output_shape=numpy_ints)) == (firsts, seconds)
    nan, subnormal = Q.copy(), Q.copy()
    nan[0, 0, 0, 0] = np.nan
    subnormal[0, 0, 0, 0] = 1e-39  # TensorFlow reads it as 0: times 4e36, an error of 4e-3, not a rounding
    for unbounded in ({"validation_data_1": nan}, {"validation_data_1": subnormal}, {"equation": "...lk,...tk->...lt"}, {"equation": "bhlk,bhtk"},
                      {"equation": "bhkk,bhtk->bht"}, {"validation_data_2": K.astype(np.float16)},
                      {"onnx_tensor_infos": {}}, {"onnx_output_shape": None}, {"onnx_output_shape": [1, 2, None, 5]}):
        assert _frame_search(_permutations(), **_frame(**unbounded)) == (everything, everything), unbounded


def test_a_screen_that_fails_or_would_hold_too_much_memory_leaves_the_search_whole(monkeypatch, capsys):
    everything = list(itertools.permutations(range(4)))
    monkeypatch.setattr(onnx2tf_v1_einsum, "LARGEST_SCREENED", Q.size - 1)
    assert _frame_search(_permutations(), **_frame()) == (everything, everything)
    monkeypatch.undo()

    def out_of_memory(search):
        raise MemoryError("float64 copies")

    monkeypatch.setattr(onnx2tf_v1_einsum, "kept_permutations", out_of_memory)
    assert _frame_search(_permutations(), **_frame()) == (everything, everything)
    assert "onnx2tf Einsum 'bhlk,bhtk->bhlt': the numpy screen failed (MemoryError: float64 copies); every pair is tried" \
        in capsys.readouterr().err


def test_the_search_is_left_whole_on_an_onnx2tf_this_was_not_checked_against(monkeypatch):
    import onnx2tf.ops.Einsum as einsum_op

    with onnx2tf_v1_einsum.einsum_search_screened():
        assert einsum_op.itertools is not itertools, f"the installed onnx2tf is one of {onnx2tf_v1_einsum.CHECKED_VERSIONS}"
    assert einsum_op.itertools is itertools
    monkeypatch.setattr(onnx2tf_v1_einsum, "onnx2tf_version", lambda: "1.30.0")
    with onnx2tf_v1_einsum.einsum_search_screened():
        assert einsum_op.itertools is itertools


def test_the_search_is_left_whole_where_tensorflow_sees_a_gpu(monkeypatch):
    """A GPU may sum float32 products in TF32 (10 bits of mantissa): the float32 bound does not hold there."""
    import onnx2tf.ops.Einsum as einsum_op

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: ["/physical_device:GPU:0"] if kind == "GPU" else [])
    with onnx2tf_v1_einsum.einsum_search_screened():
        assert einsum_op.itertools is itertools


def test_the_screen_stops_where_the_search_certainly_stops(monkeypatch):
    judged = []
    real = onnx2tf_v1_einsum._judged
    monkeypatch.setattr(onnx2tf_v1_einsum, "_judged", lambda *args: judged.append(args[-2:]) or real(*args))
    assert kept_permutations(CASES["the inputs as ONNX has them"][0]) == ([(0, 1, 2, 3)], [(0, 1, 2, 3)])
    assert judged == [((0, 1, 2, 3), (0, 1, 2, 3))]  # the first pair is certainly below 1e-3: no other is worked out
