"""onnx2tf's Reshape permutation search, decided with numpy: the permutation its Keras models would choose,
and the same converted graph, with one candidate model instead of every permutation's."""
from __future__ import annotations

import contextlib
import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("onnx2tf")

from pipeline.converters import onnx2tf_v1, onnx2tf_v1_reshape  # noqa: E402
from pipeline.converters.base import ConversionOptions  # noqa: E402


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
    """The converted graph's transposes and reshapes (op and arguments, in order), and how many Keras models
    onnx2tf's Reshape ran."""
    import onnx2tf.ops.Reshape as reshape_op

    runs = []
    real = reshape_op.dummy_tf_inference
    monkeypatch.setattr(reshape_op, "dummy_tf_inference", lambda **kwargs: runs.append(1) or real(**kwargs))
    if not decide:
        monkeypatch.setattr(onnx2tf_v1, "reshape_search_decided", contextlib.nullcontext)
    onnx_path = tmp_path / "noisy.onnx"
    _noisy_reshapes(onnx_path)
    work = tmp_path / ("decided" if decide else "searched")
    model = onnx2tf_v1.Onnx2TFV1()._converted(onnx_path, work, tmp_path / "convert.log", ConversionOptions(outputs=("saved_model",)),
                                              save=False)
    monkeypatch.undo()
    moves = []
    for layer in model.layers:
        function = layer.get_config().get("function", "")
        if "transpose" in function or "reshape" in function:
            node = layer.inbound_nodes[0]
            moves.append((function, repr(node.call_args[1:]), repr(sorted(node.call_kwargs.items()))))
    return moves, len(runs)


def test_the_search_ends_on_the_same_permutations_with_one_candidate_model(tmp_path, monkeypatch):
    searched, searched_runs = _converted(tmp_path, monkeypatch, decide=False)
    decided, decided_runs = _converted(tmp_path, monkeypatch, decide=True)
    assert decided == searched
    assert any("[0, 1, 3, 2, 4]" in "".join(move) for move in decided), decided  # not the first permutation
    assert searched_runs >= 100  # per Reshape, the graph so far, then every permutation (24, then 120)
    assert decided_runs == 4  # the graph so far and one candidate, per Reshape


def _searched_with_keras(data: np.ndarray, onnx_tensor: tuple, shape: tuple) -> tuple:
    """onnx2tf's loop itself (ops/Reshape.py): a Keras model per permutation, its dummy run, its comparison."""
    from onnx2tf.utils.common_functions import dummy_tf_inference, onnx_tf_tensor_validation

    best, best_error = tuple(range(data.ndim)), float("inf")
    for perm in itertools.permutations(range(data.ndim)):
        inputs = tf_keras.Input(shape=data.shape[1:], batch_size=data.shape[0], name="dummy_input", dtype=data.dtype)
        model = tf_keras.Model(inputs=[inputs], outputs=[tf.reshape(tensor=tf.transpose(a=inputs, perm=perm), shape=shape)])
        outputs = dummy_tf_inference(model=model, inputs=[inputs], verification_datas=[data])
        pairs = {(onnx_tensor[0], name): (onnx_tensor[1], value) for name, value in outputs.items()}
        error = sum(v[2] for v in onnx_tf_tensor_validation(output_pairs=pairs, rtol=0.0, atol=0.0).values())
        if error < best_error:
            best, best_error = perm, error
            if best_error < 1e-3:
                break
    return best


@pytest.mark.parametrize("case", ["no permutation matches", "one permutation matches", "every permutation ties"])
def test_numpy_chooses_the_permutation_the_keras_models_choose(case):
    from onnx2tf.utils.common_functions import onnx_tf_tensor_validation

    rng = np.random.default_rng(3)
    data = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)
    shape = (1, 6, 4)
    expected = {"no permutation matches": rng.standard_normal(shape).astype(np.float32),
                "one permutation matches": np.reshape(np.transpose(data, (0, 2, 1, 3)), shape),
                "every permutation ties": np.full(shape, 7.0, np.float32)}[case]
    if case == "every permutation ties":
        data = np.zeros_like(data)
    chosen = onnx2tf_v1_reshape.decided(data, ("r", expected), shape, onnx_tf_tensor_validation)
    assert chosen == _searched_with_keras(data, ("r", expected), shape)
    assert chosen == {"no permutation matches": chosen, "one permutation matches": (0, 2, 1, 3),
                      "every permutation ties": (0, 1, 2, 3)}[case]


def test_anywhere_else_permutations_is_itertools_own():
    from onnx2tf.utils.common_functions import onnx_tf_tensor_validation

    permutations = onnx2tf_v1_reshape._permutations(onnx_tf_tensor_validation)
    assert list(permutations(range(3))) == list(itertools.permutations(range(3)))
    assert list(permutations("abc", 2)) == list(itertools.permutations("abc", 2))


@pytest.mark.parametrize("shape, static", [
    ([1, 6, 4], (1, 6, 4)), ((1, -1), (1, -1)), (np.array([2, 3], np.int64), (2, 3)),
    ([1, None, 4], None), ([1, "n", 4], None), ([True, 2], None), (np.array([1.5, 2.0]), None),
])
def test_only_a_shape_of_integers_is_decided_with_numpy(shape, static):
    assert onnx2tf_v1_reshape._static_shape(shape) == static
    assert onnx2tf_v1_reshape._static_shape(tf.constant(np.array([4, 5], np.int32))) == (4, 5)
    symbolic = tf_keras.Input(shape=(2,), batch_size=1, dtype="int32")
    assert onnx2tf_v1_reshape._static_shape(symbolic) is None
