"""gradkit.nn.save / load: exact round trips, refusal of every kind of bad file, atomic writes, no code execution."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

import gradkit as gk
from gradkit import nn

HEADER = "__gradkit__"


def _model(dtype=np.float32, seed=0):
    """Dense + relu, leaky_relu(0.2), gelu(tanh), softmax(T=2) + Dropout, with non-zero biases."""
    model = nn.Sequential([
        nn.Dense(5, 16, rng=seed, dtype=dtype), "relu",
        nn.Dense(16, 16, init="glorot", rng=seed + 1, dtype=dtype),
        nn.ActivationLayer("leaky_relu", negative_slope=0.2),
        nn.Dropout(0.25, rng=seed),
        nn.Dense(16, 8, rng=seed + 2, dtype=dtype), nn.ActivationLayer("gelu", approximate="tanh"),
        nn.Dense(8, 4, rng=seed + 3, dtype=dtype), nn.ActivationLayer("softmax", temperature=2.0),
    ])
    rng = np.random.default_rng(seed + 100)
    for p in model.params.values():  # biases start at 0: give every parameter distinct values
        p[...] = rng.standard_normal(p.shape)
    return model


def _x(dtype=np.float32):
    return np.random.default_rng(7).standard_normal((11, 5)).astype(dtype)


def _parts(path):
    """The arrays and the parsed header of a checkpoint, read safely."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files if k != HEADER}
        header = json.loads(f[HEADER].tobytes().decode("utf-8"))
    return arrays, header


def _write(path, arrays, header):
    """An .npz at exactly ``path``; ``header`` is a dict (JSON-encoded), raw bytes, an array, or None (omitted)."""
    entries = dict(arrays)
    if isinstance(header, dict):
        header = json.dumps(header).encode("utf-8")
    if isinstance(header, bytes):
        header = np.frombuffer(header, dtype=np.uint8)
    if header is not None:
        entries[HEADER] = header
    with open(path, "wb") as handle:
        np.savez(handle, **entries)
    return path


@pytest.fixture
def saved(tmp_path):
    """A valid float32 checkpoint, its model, arrays and header."""
    model = _model()
    path = tmp_path / "model.npz"
    nn.save(model, path, metadata={"classes": ["a", "b", "c", "d"]})
    arrays, header = _parts(path)
    return path, model, arrays, header


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_round_trip_is_exact(tmp_path, dtype, as_path):
    model = _model(dtype)
    meta = {"classes": ["cat", "dog", "fish", "bird"], "epochs": 3, "lr": 1e-3, "nested": {"ok": True, "x": None}}
    path = as_path(tmp_path / "model.npz")
    nn.save(model, path, metadata=meta)
    loaded = nn.load(path)

    assert isinstance(loaded, nn.Sequential)
    assert loaded.config() == model.config()
    assert list(loaded.params) == list(model.params)
    for name, value in model.params.items():
        assert loaded.params[name].dtype == value.dtype == np.dtype(dtype)
        assert loaded.params[name].tobytes() == value.tobytes(), name
    x = _x(dtype)
    out, ref = loaded.forward(x), model.forward(x)
    assert out.dtype == ref.dtype and out.tobytes() == ref.tobytes()  # bit-identical
    assert loaded.metadata == meta
    assert loaded.layers[-1].activation.temperature == 2.0
    assert loaded.layers[3].activation.negative_slope == 0.2
    assert loaded.layers[6].activation.approximate == "tanh"
    assert loaded.layers[4].rate == 0.25


def test_file_format_is_the_documented_one(saved):
    path, model, arrays, header = saved
    assert sorted(arrays) == sorted(model.params) == ["0.W", "0.b", "2.W", "2.b", "5.W", "5.b", "7.W", "7.b"]
    def dense(n_in, n_out, init="he"):
        return {"name": "Dense", "builtin": True,
                "params": {"in_features": n_in, "out_features": n_out, "init": init, "dtype": "float32"}}

    assert header == {
        "format": "gradkit.nn.checkpoint",
        "format_version": 2,
        "gradkit_version": gk.__version__,
        "architecture": model.config(),
        "params": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in model.params.items()},
        "identity": [
            dense(5, 16), {"name": "relu", "builtin": True, "params": {"axis": -1}},
            dense(16, 16, "glorot"),
            {"name": "leaky_relu", "builtin": True, "params": {"negative_slope": 0.2, "axis": -1}},
            {"name": "Dropout", "builtin": True, "params": {"rate": 0.25}},
            dense(16, 8), {"name": "gelu", "builtin": True, "params": {"approximate": "tanh", "axis": -1}},
            dense(8, 4), {"name": "softmax", "builtin": True, "params": {"axis": -1, "temperature": 2.0}},
        ],
        "metadata": {"classes": ["a", "b", "c", "d"]},
    }
    with np.load(path, allow_pickle=False) as f:
        assert f[HEADER].dtype == np.uint8 and f[HEADER].ndim == 1


def _softsign(x):
    return x / (1 + abs(x))


def _softsign_vjp(x, g, y):
    return g / (1 + abs(x)) ** 2


def test_a_checkpoint_of_format_version_1_still_loads(tmp_path):
    """The layout format version 1 wrote, generated here field by field: no "identity" in the header."""
    act = gk.custom_activation(_softsign, _softsign_vjp, name="old_softsign", elementwise=True)
    gk.activations.register("old_softsign", act)
    try:
        model = _model()
        model.layers.append(nn.ActivationLayer(act))
        header = {"format": "gradkit.nn.checkpoint", "format_version": 1, "gradkit_version": "0.1.0",
                  "architecture": model.config(),
                  "params": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in model.params.items()},
                  "metadata": {"classes": [1, 2]}}
        assert [layer["type"] for layer in header["architecture"]].count("Activation") == 5
        path = _write(tmp_path / "old.npz", model.params, header)
        loaded = nn.load(path)
        assert loaded.config() == model.config() and loaded.metadata == {"classes": [1, 2]}
        np.testing.assert_array_equal(loaded.forward(_x()), model.forward(_x()))
        assert loaded.layers[-1].activation == act and loaded.layers[3].activation.negative_slope == 0.2
        nn.save(loaded, tmp_path / "new.npz")  # saved again: the current format, with the identity
        assert _parts(tmp_path / "new.npz")[1]["format_version"] == 2
    finally:
        gk.activations.unregister("old_softsign")


def test_numpy_metadata_is_converted_and_none_stays_none(tmp_path):
    meta = {"classes": np.array([3, 5, 7]), "names": np.array(["cat", "dog"]), "n": np.int64(4),
            "lr": np.float32(0.5), "flag": np.bool_(True), "pair": (1, 2)}
    nn.save(_model(), tmp_path / "a.npz", metadata=meta)
    got = nn.load(tmp_path / "a.npz").metadata
    assert got == {"classes": [3, 5, 7], "names": ["cat", "dog"], "n": 4, "lr": 0.5, "flag": True, "pair": [1, 2]}
    assert type(got["n"]) is int and type(got["flag"]) is bool
    nn.save(_model(), tmp_path / "b.npz")
    assert nn.load(tmp_path / "b.npz").metadata is None


def test_path_is_used_as_given_and_save_does_not_touch_the_model(tmp_path):
    model = _model()
    before = {k: v.copy() for k, v in model.params.items()}
    nn.save(model, tmp_path / "weights.ckpt", metadata={"a": 1})
    assert sorted(os.listdir(tmp_path)) == ["weights.ckpt"]  # no ".npz" appended, no temp file left
    assert model.metadata is None  # save does not attach the metadata to the model
    assert all(np.array_equal(before[k], v) for k, v in model.params.items())
    assert nn.load(tmp_path / "weights.ckpt").metadata == {"a": 1}


def test_loaded_model_trains(tmp_path):
    nn.save(_model(np.float64), tmp_path / "m.npz")
    model = nn.load(tmp_path / "m.npz")
    w0 = model.params["0.W"].copy()
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((32, 5)), rng.integers(0, 4, 32)
    nn.fit(model, X, y, loss=gk.compose(gk.LogSoftmax(), gk.NLLLoss()), epochs=1, batch_size=8, rng=0)
    assert not np.array_equal(model.params["0.W"], w0)  # parameters are writable arrays


# --- save's argument checks ---------------------------------------------------------------------


class _NoConfig(nn.Layer):
    def forward(self, x, *, training=False):
        return x


class _Unknown(_NoConfig):
    def config(self):
        return {"type": "Mystery"}


@pytest.mark.parametrize(
    ("make", "exc", "pattern"),
    [
        (lambda p: ([_model()], p, None), TypeError, "model must be a gradkit.nn.Sequential; got list"),
        (lambda p: (_model(), 42, None), TypeError, "path must be a str or an os.PathLike of str; got int"),
        (lambda p: (_model(), b"m.npz", None), TypeError, "path must be .*; got bytes"),
        (lambda p: (_model(), "", None), ValueError, "path must not be empty"),
        (lambda p: (_model(), p.parent, None), ValueError, "path must name a file; .* is a directory"),
        (lambda p: (_model(), p.parent / "nope" / "m.npz", None), FileNotFoundError, "does not exist"),
        (lambda p: (_model(), p, [1, 2]), TypeError, "metadata must be a dict or None; got list"),
        (lambda p: (_model(), p, {"s": {1, 2}}), TypeError, "metadata must be JSON-serializable.*set"),
        (lambda p: (_model(), p, {"o": object()}), TypeError, "metadata must be JSON-serializable.*object"),
        (lambda p: (nn.Sequential([nn.Dense(2, 2), _NoConfig()]), p, None), TypeError,
         r"model: layer 1 \(_NoConfig\) has no config\(\)"),
        (lambda p: (nn.Sequential([nn.Dense(2, 2), _Unknown()]), p, None), ValueError,
         "model cannot be checkpointed: .*unknown layer type 'Mystery'"),
    ],
    ids=["model", "path-int", "path-bytes", "path-empty", "path-dir", "no-dir", "meta-list", "meta-set",
         "meta-object", "layer-no-config", "layer-unknown"],
)
def test_save_rejects_bad_arguments_and_writes_nothing(tmp_path, make, exc, pattern):
    target = tmp_path / "m.npz"
    with pytest.raises(exc, match=pattern):
        nn.save(*make(target))
    assert os.listdir(tmp_path) == []


def test_save_refuses_parameters_that_disagree_with_the_config(tmp_path):
    model = _model()
    model.layers[0].params["W"] = model.layers[0].params["W"].astype(np.float64)  # config still says float32
    with pytest.raises(ValueError, match="parameter '0.W' has dtype float64; the architecture builds float32"):
        nn.save(model, tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


# --- load refuses bad files, naming the path and the problem ------------------------------------


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "absent.npz")


def test_load_rejects_a_bad_path_argument():
    with pytest.raises(TypeError, match="path must be a str or an os.PathLike of str; got NoneType"):
        nn.load(None)


def test_truncated_file(saved, tmp_path):
    path = saved[0]
    data = path.read_bytes()
    bad = tmp_path / "half.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"half\.npz: truncated or corrupt checkpoint"):
        nn.load(bad)


def test_corrupted_array_bytes(saved, tmp_path):
    path, model = saved[0], saved[1]
    data = bytearray(path.read_bytes())
    raw = model.params["2.W"].tobytes()
    at = bytes(data).index(raw) + len(raw) // 2
    data[at] ^= 0xFF  # one flipped byte inside the stored array: the zip CRC catches it
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"flipped\.npz: truncated or corrupt checkpoint: array '2\.W' is unreadable"):
        nn.load(bad)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "the file is empty"),
        (np.random.default_rng(0).bytes(4096), r"not an \.npz \(zip\) archive"),
        (b"\x93NUMPY random tail", r"not an \.npz \(zip\) archive"),
    ],
    ids=["empty", "random-bytes", "npy-magic"],
)
def test_not_an_npz(tmp_path, content, pattern):
    bad = tmp_path / "junk.bin"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=rf"junk\.bin: not a gradkit checkpoint: {pattern}"):
        nn.load(bad)


def test_zip_that_is_not_an_npz(tmp_path):
    bad = tmp_path / "plain.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr(HEADER, b'{"format": "gradkit.nn.checkpoint"}')  # no .npy: numpy would hand back bytes
    with pytest.raises(ValueError, match=r"plain\.zip: entry '__gradkit__' is not a \.npy array"):
        nn.load(bad)


def test_npz_without_header(tmp_path):
    bad = _write(tmp_path / "bare.npz", {"0.W": np.ones((2, 2))}, None)
    with pytest.raises(ValueError, match=r"bare\.npz: not a gradkit checkpoint: no '__gradkit__' entry"):
        nn.load(bad)


@pytest.mark.parametrize(
    ("header", "pattern"),
    [
        (b'{"format": "gradkit.nn.checkpoint", ', "header is not valid UTF-8 JSON"),
        (b"\xff\xfe{}", "header is not valid UTF-8 JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "header is not valid UTF-8 JSON"),
        (np.zeros(4, dtype=np.float32), "must be a 1-d uint8 array of JSON bytes; got dtype float32"),
        (b"[1, 2]", "header must be a JSON object; got list"),
    ],
    ids=["bad-json", "bad-utf8", "deep-json", "float-header", "json-list"],
)
def test_bad_header_bytes(saved, tmp_path, header, pattern):
    bad = _write(tmp_path / "bad.npz", saved[2], header)
    with pytest.raises(ValueError, match=rf"bad\.npz: .*{pattern}"):
        nn.load(bad)


def _edit(header, **changes):
    out = json.loads(json.dumps(header))
    for key, value in changes.items():
        if value is _DELETE:
            del out[key]
        else:
            out[key] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"format": "keras"}, "not a gradkit checkpoint: format is 'keras', expected 'gradkit.nn.checkpoint'"),
        ({"format": _DELETE}, "not a gradkit checkpoint: format is None"),
        ({"format_version": 3},
         rf"the file has format_version 3; this gradkit \({re.escape(gk.__version__)}\) reads format_version 1 or 2"),
        ({"format_version": True}, "the file has format_version True; .* reads format_version 1 or 2"),
        ({"format_version": "1"}, "the file has format_version '1'"),
        ({"architecture": []}, "the architecture must be a non-empty list"),
        ({"architecture": {"0": "Dense"}}, "the header's 'architecture' is missing or of the wrong type"),
        ({"params": _DELETE}, "the header's 'params' is missing or of the wrong type"),
        ({"metadata": [1, 2]}, "the header's 'metadata' is missing or of the wrong type"),
        ({"identity": _DELETE}, "the header's 'identity' is missing or of the wrong type; got None"),
    ],
    ids=["format", "no-format", "version-3", "version-true", "version-str", "arch-empty", "arch-dict",
         "no-params", "metadata-list", "no-identity"],
)
def test_bad_header_fields(saved, tmp_path, changes, pattern):
    bad = _write(tmp_path / "bad.npz", saved[2], _edit(saved[3], **changes))
    with pytest.raises(ValueError, match=rf"bad\.npz: {pattern}"):
        nn.load(bad)


@pytest.mark.parametrize(
    ("layer", "pattern"),
    [
        ({"type": "Conv2D", "filters": 8}, "layer 1 of the architecture cannot be built: unknown layer type 'Conv2D'"),
        ({"type": "Activation", "name": "swishy", "params": {}}, "layer 1 .* unknown activation 'swishy'"),
        ({"type": "Activation", "name": "relu", "params": {"bogus": 1}}, "layer 1 .* unexpected argument.*bogus"),
        ({"type": "Dropout"}, "layer 1 of the architecture .* lacks the key 'rate'"),
        ({"type": "Dropout", "rate": 2.0}, r"layer 1 .* rate must be in \[0, 1\)"),
        ({"type": "Dropout", "rate": 0.5, "seed": 3}, "layer 1 of the architecture, .* does not round-trip"),
        ("relu", "layer 1 of the architecture must be a dict; got 'relu'"),
    ],
    ids=["unknown-layer", "unknown-activation", "bad-kwarg", "missing-key", "bad-value", "extra-key", "not-dict"],
)
def test_bad_architecture(saved, tmp_path, layer, pattern):
    header = saved[3]
    architecture = list(header["architecture"])
    architecture[1] = layer  # layer 1 is "relu", parameterless: the arrays still fit
    bad = _write(tmp_path / "bad.npz", saved[2], _edit(header, architecture=architecture))
    with pytest.raises(ValueError, match=rf"bad\.npz: {pattern}"):
        nn.load(bad)


def test_missing_parameter_array(saved, tmp_path):
    arrays = {k: v for k, v in saved[2].items() if k != "5.b"}
    bad = _write(tmp_path / "bad.npz", arrays, saved[3])
    with pytest.raises(ValueError, match=r"bad\.npz: parameter array\(s\) '5\.b' missing"):
        nn.load(bad)


def test_unexpected_array(saved, tmp_path):
    arrays = {**saved[2], "9.W": np.ones(3, dtype=np.float32)}
    bad = _write(tmp_path / "bad.npz", arrays, saved[3])
    with pytest.raises(ValueError, match=r"bad\.npz: unexpected array\(s\) '9\.W'"):
        nn.load(bad)


def test_parameter_of_the_wrong_shape(saved, tmp_path):
    arrays = {**saved[2], "0.W": saved[2]["0.W"][:, :15]}
    bad = _write(tmp_path / "bad.npz", arrays, saved[3])
    pattern = r"bad\.npz: layer 0 declares Dense\(5, 16\) but the file has shape \(5, 15\) for '0\.W'"
    with pytest.raises(ValueError, match=pattern):
        nn.load(bad)
    # a bias of the wrong shape is caught by the comparison after building
    arrays = {**saved[2], "0.b": saved[2]["0.b"][:15]}
    bad = _write(tmp_path / "bad.npz", arrays, saved[3])
    with pytest.raises(ValueError, match=r"parameter '0\.b' has shape \(15,\); the architecture builds \(16,\)"):
        nn.load(bad)


@pytest.mark.parametrize("dtype", [np.float64, np.int32, ">f4"])
def test_parameter_of_the_wrong_dtype(saved, tmp_path, dtype):
    arrays = {**saved[2], "2.b": saved[2]["2.b"].astype(dtype)}
    bad = _write(tmp_path / "bad.npz", arrays, saved[3])
    with pytest.raises(ValueError, match=r"bad\.npz: parameter '2\.b' has dtype .*; the architecture builds float32"):
        nn.load(bad)


def test_header_params_table_must_describe_the_arrays(saved, tmp_path):
    header = saved[3]
    params = {**header["params"], "0.b": {"shape": [99], "dtype": "float32"}}
    bad = _write(tmp_path / "bad.npz", saved[2], _edit(header, params=params))
    with pytest.raises(ValueError, match=r"bad\.npz: the header's params table disagrees with the arrays at '0\.b'"):
        nn.load(bad)


# --- nothing in a checkpoint is ever executed ---------------------------------------------------


class _Payload:
    """Unpickling this runs ``exec``: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("entry", ["0.W", HEADER])
def test_object_arrays_are_never_unpickled(saved, tmp_path, entry):
    marker = tmp_path / "pwned"
    evil = np.array([_Payload(marker)], dtype=object)
    arrays, header = dict(saved[2]), saved[3]
    if entry == HEADER:
        bad = _write(tmp_path / "evil.npz", arrays, evil)
    else:
        bad = _write(tmp_path / "evil.npz", {**arrays, entry: evil}, header)
    with np.load(bad, allow_pickle=True) as f:  # the payload is live: unpickling it runs code
        f[entry]
    assert marker.exists()
    marker.unlink()

    with pytest.raises(ValueError, match=rf"evil\.npz: array '{entry}' is an object array .*refusing to unpickle"):
        nn.load(bad)
    assert not marker.exists()


def test_reduce_keys_in_the_json_header_are_plain_data(saved, tmp_path):
    marker = tmp_path / "pwned"
    code = f"open({str(marker)!r}, 'w').close()"
    reduce = {"__reduce__": ["builtins.exec", [code]], "py/reduce": [{"py/function": "builtins.exec"}, code]}
    header = _edit(saved[3], **reduce)
    architecture = list(header["architecture"])
    architecture[1] = {"type": "Activation", "name": "relu", "params": {"axis": -1}, **reduce}
    bad = _write(tmp_path / "evil.npz", saved[2], _edit(header, architecture=architecture))
    with pytest.raises(ValueError, match=r"evil\.npz: layer 1 of the architecture, .* does not round-trip"):
        nn.load(bad)
    assert not marker.exists()
    only_reduce = _write(tmp_path / "evil2.npz", saved[2], reduce)
    with pytest.raises(ValueError, match=r"evil2\.npz: not a gradkit checkpoint: format is None"):
        nn.load(only_reduce)
    assert not marker.exists()


# --- atomic writes ------------------------------------------------------------------------------


def _failing_savez(calls, directory):
    real = np.savez

    def savez(file, *args, **kwds):  # writes half a valid archive, then the disk "fills up"
        calls.append(sorted(os.listdir(directory)))  # what the directory holds while the write is under way
        buffer = io.BytesIO()
        real(buffer, *args, **kwds)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        raise OSError(28, "No space left on device")

    return savez


def test_a_crash_mid_save_keeps_the_old_checkpoint(saved, monkeypatch):
    path, model = saved[0], saved[1]
    good = path.read_bytes()
    calls = []
    monkeypatch.setattr(np, "savez", _failing_savez(calls, path.parent))
    with pytest.raises(OSError, match="No space left"):
        nn.save(_model(seed=5), path, metadata={"new": True})
    monkeypatch.undo()
    assert len(calls) == 1 and len(calls[0]) == 2 and path.name in calls[0]  # it wrote a temp file beside it
    assert path.read_bytes() == good
    assert os.listdir(path.parent) == [path.name]  # the temp file is gone
    loaded = nn.load(path)
    assert loaded.metadata == {"classes": ["a", "b", "c", "d"]}
    assert loaded.forward(_x()).tobytes() == model.forward(_x()).tobytes()


def test_a_crash_mid_save_leaves_no_file_behind(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(np, "savez", _failing_savez(calls, tmp_path))
    with pytest.raises(OSError):
        nn.save(_model(), tmp_path / "new.npz")
    assert len(calls) == 1 and calls[0] != [] and "new.npz" not in calls[0]
    assert os.listdir(tmp_path) == []


def test_save_replaces_an_existing_checkpoint(saved):
    path = saved[0]
    nn.save(_model(np.float64, seed=9), path, metadata={"v": 2})
    loaded = nn.load(path)
    assert loaded.metadata == {"v": 2} and loaded.params["0.W"].dtype == np.float64
    assert os.listdir(path.parent) == [path.name]


def test_a_crafted_huge_dense_is_refused_before_allocation(tmp_path):
    """A header may not make load() allocate more than the file holds."""
    import json
    import tracemalloc

    model = nn.Sequential([nn.Dense(3, 2, rng=0)])
    path = tmp_path / "m.npz"
    nn.save(model, path)
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(bytes(arrays["__gradkit__"]).decode())
    header["architecture"][0].update(in_features=100_000, out_features=100_000)
    header["identity"][0]["params"].update(in_features=100_000, out_features=100_000)  # consistent: the arrays decide
    arrays["__gradkit__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"declares Dense\(100000, 100000\) but the file has shape \(3, 2\)"):
        nn.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50_000_000  # the 40 GB matrix was never allocated
