"""Property-based tests of the input dispatch (``sklearn_ltm._inputs``) with hypothesis.

Whatever the shape, dtype, container (array, list, DataFrame, Series, generator) and
values (NaN, inf, huge, strings), ``check_audio`` and ``check_text`` either raise a clear
ValueError/TypeError or return an input of the right kind holding exactly the given
values, and never modify what they were given.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from sklearn_ltm._inputs import AudioInput, TextInput, as_values, check_audio, check_text  # noqa: E402

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

NUMERIC_DTYPES = st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float16,
                                  np.float32, np.float64, np.bool_, np.complex64])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@st.composite
def numeric_arrays(draw):
    dtype = np.dtype(draw(NUMERIC_DTYPES))
    shape = draw(SHAPES)
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def text_values(draw):
    return draw(st.one_of(
        st.text(max_size=6),
        st.sampled_from(["1.5", "nan", "  ", "", "inf", "0"]),
        st.floats(allow_nan=True),
        st.integers(-5, 5),
        st.none(),
        st.binary(max_size=3),
    ))


@st.composite
def object_arrays(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))
    n = int(np.prod(shape))
    values = draw(st.lists(text_values(), min_size=n, max_size=n))
    arr = np.empty(n, dtype=object)
    arr[:] = values
    return arr.reshape(shape)


@st.composite
def valid_matrices(draw):
    """2-D finite numbers of every real dtype: what must come back as features."""
    dtype = np.dtype(draw(st.sampled_from([np.int8, np.int64, np.uint8, np.float16, np.float32,
                                           np.float64, np.bool_])))
    shape = draw(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=4))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(-1e4, 1e4, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def valid_strings(draw):
    """1-D captions or paths (object array), sometimes with a blank one."""
    texts = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=5))
    arr = np.empty(len(texts), dtype=object)
    arr[:] = texts
    return arr


@st.composite
def containers(draw):
    """An array, its list form, a DataFrame or Series of it, or a generator of its rows."""
    arr = draw(st.one_of(numeric_arrays(), object_arrays(), valid_matrices(), valid_strings(),
                         hnp.arrays(hnp.unicode_string_dtypes(max_len=4), SHAPES)))
    form = draw(st.sampled_from(["array", "list", "tuple", "frame", "generator"]))
    if form == "list" and arr.ndim > 0:
        return arr, arr.tolist()
    if form == "tuple" and arr.ndim > 0:
        return arr, tuple(arr.tolist())
    if form == "frame" and arr.ndim in (1, 2) and arr.dtype.kind != "c":
        pd = pytest.importorskip("pandas")
        if arr.ndim == 1:
            return arr, pd.Series(arr)
        cols = draw(st.lists(st.text(min_size=1, max_size=3), min_size=arr.shape[1],
                             max_size=arr.shape[1], unique=True))
        return arr, pd.DataFrame(arr, columns=cols)
    if form == "generator" and arr.ndim > 0:
        return arr, (row for row in arr.tolist())
    return arr, arr


def _snapshot(value):
    if type(value).__module__.startswith("pandas"):
        return value.copy(deep=True)
    if hasattr(value, "__next__"):
        return None  # a generator is consumed by design
    return copy.deepcopy(value)


def _unchanged(before, value):
    if before is None:
        return True
    if type(value).__module__.startswith("pandas"):
        return before.equals(value)
    if isinstance(value, np.ndarray):
        return before.dtype == value.dtype and np.array_equal(
            before, value, equal_nan=value.dtype.kind in "fc")
    return repr(before) == repr(value)


def _expected_float32(arr):
    """What a valid 2-D numeric input must come back as."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(arr).astype(np.float64).astype(np.float32)


def _is_number(v):
    return isinstance(v, (int, float, np.number, np.bool_)) and not isinstance(v, (str, bytes))


@SETTINGS
@given(data=containers(), encoder=st.sampled_from(["auto", "features", "cnn10"]))
def test_check_audio_answers_cleanly_and_exactly(data, encoder):
    arr, value = data
    before = _snapshot(value)
    try:
        out = check_audio(value, encoder)
    except (ValueError, TypeError) as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(out, AudioInput)
        if out.kind == "paths":
            assert encoder != "features"
            assert out.data == [str(v) for v in np.asarray(arr).tolist()]
            assert all(p.strip() and "\0" not in p for p in out.data)
        else:
            assert out.kind == ("features" if encoder in ("auto", "features") else "waveforms")
            assert out.data.dtype == np.float32 and out.data.ndim == 2
            assert out.data.shape == np.asarray(arr).shape and min(out.data.shape) >= 1
            assert np.isfinite(out.data).all()
            if arr.dtype.kind == "O":  # only real numbers (no strings) may be features
                assert all(_is_number(v) for v in arr.ravel())
            else:
                assert arr.dtype.kind in "fiub"
            np.testing.assert_array_equal(out.data, _expected_float32(arr))
    assert _unchanged(before, value)


@SETTINGS
@given(data=containers(), encoder=st.sampled_from(["auto", "features", "scratch"]))
def test_check_text_answers_cleanly_and_exactly(data, encoder):
    arr, value = data
    before = _snapshot(value)
    try:
        out = check_text(value, encoder)
    except (ValueError, TypeError) as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(out, TextInput)
        if out.kind == "strings":
            assert encoder != "features"
            assert out.data == list(np.asarray(arr, dtype=object).ravel())
            one_column_frame = type(value).__name__ == "DataFrame" and arr.shape[1:] == (1,)
            assert arr.ndim == 1 or one_column_frame
            assert all(isinstance(c, str) and c.strip() for c in out.data)
        else:
            assert out.kind == "features" and encoder in ("auto", "features")
            assert out.data.dtype == np.float32 and out.data.ndim == 2 and arr.ndim == 2
            assert np.isfinite(out.data).all() and min(out.data.shape) >= 1
            np.testing.assert_array_equal(out.data, _expected_float32(arr))
    assert _unchanged(before, value)


@SETTINGS
@given(n=st.integers(1, 5), d=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_a_dataframe_is_its_values_whatever_its_labels(n, d, seed):
    pd = pytest.importorskip("pandas")
    values = np.random.default_rng(seed).normal(size=(n, d))
    labels = [f"caption {i}" for i in range(d)]  # string labels: once read as captions
    frame = pd.DataFrame(values, columns=labels, index=np.arange(n)[::-1] * 7)
    for check, enc in ((check_audio, "auto"), (check_text, "auto")):
        from_frame, from_array = check(frame, enc), check(values, enc)
        assert from_frame.kind == from_array.kind == "features"
        np.testing.assert_array_equal(from_frame.data, from_array.data)
    assert list(frame.columns) == labels


@SETTINGS
@given(captions=st.lists(st.text(min_size=1, max_size=8).filter(str.strip), min_size=1,
                         max_size=6))
def test_one_shot_iterables_give_the_same_input_as_lists(captions):
    listed = check_text(list(captions), "auto")
    for one_shot in (iter(captions), (c for c in captions), map(str, captions)):
        got = check_text(one_shot, "auto")
        assert got.kind == listed.kind == "strings" and got.data == listed.data


@SETTINGS
@given(value=st.one_of(st.sets(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2),
                                                                           st.integers(),
                                                                           max_size=3)))
def test_unordered_containers_are_refused(value):
    with pytest.raises(TypeError, match="no order"):
        as_values(value)


@SETTINGS
@given(x=st.floats(allow_nan=True, allow_infinity=True))
@example(x=3.4e38).via("the float32 boundary, once found by the search")
@example(x=3.5e38).via("just beyond float32")
def test_non_finite_or_out_of_range_values_are_named(x):
    X = np.zeros((2, 2))
    X[1, 0] = x
    with np.errstate(over="ignore"):
        fits = bool(np.isfinite(np.float32(x)))  # within float32 once rounded (3.4e38 is)
    if fits:
        assert check_audio(X, "auto").data[1, 0] == np.float32(x)
    else:
        with pytest.raises(ValueError, match=r"row 1, column 0"):
            check_audio(X, "auto")
