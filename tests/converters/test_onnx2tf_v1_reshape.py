"""onnx2tf's Reshape permutation search, decided with numpy: the permutation its Keras models would choose,
and the same converted graph, with one candidate model instead of every permutation's."""
from __future__ import annotations

import contextlib
import itertools
import sys

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("onnx2tf")

from pipeline.converters import onnx2tf_v1, onnx2tf_v1_reshape  # noqa: E402
from tests.converters.onnx2tf_graphs import converted_ops  # noqa: E402


def _noisy_reshapes(path):
    """x + RandomNormalLike(x), then two Reshapes (rank 4 -> 5 -> 3). onnx2tf's dummy TF run and ONNX
    Runtime draw different noise, so no permutation matches ONNX Runtime's tensor: each search tries every
    permutation (24, then 120), as it does behind a layer converted wrong (a tiny Swin's: 720 per window)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 12])
    shapes = [numpy_helper.from_array(np.array(s, np.int64), n) for n, s in (("s1", [1, 4, 2, 2, 6]), ("s2", [1, 8, 12]))]
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["noise"], seed=1.0), helper.make_node("Add", ["x", "noise"], ["a"]),
             helper.make_node("Reshape", ["a", "s1"], ["r"]), helper.make_node("Reshape", ["r", "s2"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "noisy", [x], [y], shapes), opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _converted(tmp_path, monkeypatch, decide: bool) -> tuple[list, int]:
    """The converted graph's transposes and reshapes, and how many Keras models onnx2tf's Reshape ran."""
    import onnx2tf.ops.Reshape as reshape_op

    runs = []
    real = reshape_op.dummy_tf_inference
    monkeypatch.setattr(reshape_op, "dummy_tf_inference", lambda **kwargs: runs.append(1) or real(**kwargs))
    if not decide:
        monkeypatch.setattr(onnx2tf_v1, "reshape_search_decided", contextlib.nullcontext)
    onnx_path = tmp_path / "noisy.onnx"
    _noisy_reshapes(onnx_path)
    moves = converted_ops(onnx_path, tmp_path / ("decided" if decide else "searched"), ("transpose", "reshape"))
    monkeypatch.undo()
    return moves, len(runs)


def test_the_search_ends_on_the_same_permutations_with_one_candidate_model(tmp_path, monkeypatch):
    searched, searched_runs = _converted(tmp_path, monkeypatch, decide=False)
    decided, decided_runs = _converted(tmp_path, monkeypatch, decide=True)
    assert decided == searched
    assert any("[0, 1, 3, 2, 4]" in "".join(move) for move in decided), decided  # not the first permutation
    assert searched_runs >= 100  # per Reshape, the graph so far, then every permutation (24, then 120)
    assert decided_runs == 4  # the graph so far and one candidate, per Reshape


def _searched_with_keras(data: np.ndarray, onnx_tensor: tuple, shape: tuple) -> tuple | None:
    """onnx2tf's loop itself (ops/Reshape.py): a Keras model per permutation, its dummy run, its comparison,
    a candidate that raises skipped; None where it keeps none (the loop's identity)."""
    from onnx2tf.utils.common_functions import dummy_tf_inference, onnx_tf_tensor_validation

    best, best_error = None, sys.maxsize
    for perm in itertools.permutations(range(data.ndim)):
        try:
            inputs = tf_keras.Input(shape=data.shape[1:], batch_size=data.shape[0], name="dummy_input", dtype=data.dtype)
            model = tf_keras.Model(inputs=[inputs], outputs=[tf.reshape(tensor=tf.transpose(a=inputs, perm=perm), shape=shape)])
            outputs = dummy_tf_inference(model=model, inputs=[inputs], verification_datas=[data])
            pairs = {(onnx_tensor[0], name): (onnx_tensor[1], value) for name, value in outputs.items()}
            error = sum(v[2] for v in onnx_tf_tensor_validation(output_pairs=pairs, rtol=0.0, atol=0.0).values())
        except Exception:  # noqa: BLE001 (what onnx2tf's loop does with a candidate that raises)
            continue
        if error < best_error:
            best, best_error = perm, error
            if best_error < 1e-3:
                break
    return best


RNG = np.random.default_rng(3)
DATA = RNG.standard_normal((1, 2, 3, 4)).astype(np.float32)
ARGMIN = "the smallest error's"
CASES = {  # name: (data, ONNX Runtime's tensor, target shape, the permutation kept; None: none, the identity stays)
    "no permutation matches": (DATA, RNG.standard_normal((1, 6, 4)).astype(np.float32), (1, 6, 4), ARGMIN),
    "one permutation matches": (DATA, np.reshape(np.transpose(DATA, (0, 2, 1, 3)), (1, 6, 4)), (1, -1, 4), (0, 2, 1, 3)),
    "every permutation ties": (np.zeros_like(DATA), np.full((1, 6, 4), 7.0, np.float32), (1, 6, 4), (0, 1, 2, 3)),
    "NaN everywhere": (np.full_like(DATA, np.nan), np.zeros((1, 6, 4), np.float32), (1, 6, 4), None),
    "Inf in the tensor": (np.where(DATA > 1, np.inf, DATA), np.zeros((1, 24), np.float32), (1, 24), None),
    "integers": ((DATA * 10).astype(np.int64), np.reshape(np.transpose((DATA * 10).astype(np.int64), (0, 3, 2, 1)), (4, 6)),
                 (4, 6), (0, 3, 2, 1)),
    "float16": (DATA.astype(np.float16), np.reshape(np.transpose(DATA.astype(np.float16), (0, 1, 3, 2)), (2, 12)),
                (2, 12), (0, 1, 3, 2)),
    "booleans": (DATA > 0, np.reshape(np.transpose(DATA > 0, (0, 2, 3, 1)), (1, 24)), (1, 24), (0, 2, 3, 1)),
    "no reshape fits": (DATA, np.zeros((5, 5), np.float32), (5, 5), None),
}


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # float16 errors against sys.maxsize
@pytest.mark.parametrize("case", list(CASES))
def test_numpy_keeps_the_permutation_the_keras_models_keep(case):
    from onnx2tf.utils.common_functions import onnx_tf_tensor_validation

    data, expected, shape, kept = CASES[case]
    chosen = onnx2tf_v1_reshape.decided(data, ("r", expected), shape, onnx_tf_tensor_validation)
    assert chosen == _searched_with_keras(data, ("r", expected), shape)
    assert chosen == kept or (kept == ARGMIN and chosen is not None)


def _permutations():
    from onnx2tf.utils.common_functions import onnx_tf_tensor_validation
    from onnx2tf.utils.enums import NUMPY_DTYPES_TO_TF_DTYPES

    return onnx2tf_v1_reshape._permutations(onnx_tf_tensor_validation, frozenset(NUMPY_DTYPES_TO_TF_DTYPES))


def test_anywhere_else_permutations_is_itertools_own():
    permutations = _permutations()
    assert list(permutations(range(3))) == list(itertools.permutations(range(3)))
    assert list(permutations("abc", 2)) == list(itertools.permutations("abc", 2))


def _search_frame(permutations, **names) -> list:
    """permutations(range(tensor_rank)) called where onnx2tf's search calls it, with these locals."""
    validation_data, onnx_tensor_infos, final_shape, tensor_rank = (  # noqa: F841 (read from this frame)
        names["validation_data"], names["onnx_tensor_infos"], names["final_shape"], names["tensor_rank"])
    return list(permutations(range(tensor_rank)))


def test_inside_the_search_it_gives_only_the_permutation_kept_or_none():
    permutations = _permutations()
    data, expected, shape, kept = CASES["one permutation matches"]
    frame = {"validation_data": data, "onnx_tensor_infos": {"r": expected}, "final_shape": list(shape), "tensor_rank": 4}
    assert _search_frame(permutations, **frame) == [kept]
    nan = CASES["NaN everywhere"]
    assert _search_frame(permutations, **{**frame, "validation_data": nan[0], "onnx_tensor_infos": {"r": nan[1]}}) == []


@pytest.mark.parametrize("change", [
    {"onnx_tensor_infos": None}, {"onnx_tensor_infos": {}}, {"tensor_rank": 3}, {"final_shape": [1, None, 4]},
    {"validation_data": DATA.astype("U1")},  # a dtype onnx2tf's comparison does not know: it would raise
])
def test_where_the_search_is_not_as_expected_every_permutation_is_tried(change):
    permutations = _permutations()
    data, expected, shape, _ = CASES["one permutation matches"]
    frame = {"validation_data": data, "onnx_tensor_infos": {"r": expected}, "final_shape": list(shape), "tensor_rank": 4,
             **change}
    assert _search_frame(permutations, **frame) == list(itertools.permutations(range(frame["tensor_rank"])))


def test_an_onnx2tf_whose_loop_was_not_checked_searches_as_it_does(monkeypatch):
    import onnx2tf.ops.Reshape as reshape_op

    with onnx2tf_v1_reshape.reshape_search_decided():
        assert reshape_op.itertools is not itertools, f"the installed onnx2tf is one of {onnx2tf_v1_reshape.CHECKED_VERSIONS}"
    monkeypatch.setattr(onnx2tf_v1_reshape, "onnx2tf_version", lambda: "1.30.0")
    with onnx2tf_v1_reshape.reshape_search_decided():
        assert reshape_op.itertools is itertools
    assert reshape_op.itertools is itertools


@pytest.mark.parametrize("shape, static", [
    ([1, 6, 4], (1, 6, 4)), ((1, -1), (1, -1)), (np.array([2, 3], np.int64), (2, 3)),
    ([1, None, 4], None), ([1, "n", 4], None), ([True, 2], None), (np.array([1.5, 2.0]), None),
])
def test_only_a_shape_of_integers_is_decided_with_numpy(shape, static):
    assert onnx2tf_v1_reshape._static_shape(shape) == static


def test_a_constant_shape_tensor_is_read_and_a_symbolic_one_is_not():
    assert onnx2tf_v1_reshape._static_shape(tf.constant(np.array([4, 5], np.int32))) == (4, 5)
    assert onnx2tf_v1_reshape._static_shape(tf_keras.Input(shape=(2,), batch_size=1, dtype="int32")) is None
