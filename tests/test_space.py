from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import TunesmithError
from agent.evolution.regions import CodeLocation
from agent.space import (
    PARAM_TYPES,
    Categorical,
    Code,
    Float,
    Int,
    InvalidCandidate,
    Space,
    SpaceError,
    SpaceTable,
    Text,
    register_param_type,
)

MIXED = Space(
    lr=Float(1e-5, 1e-1, log=True),
    dropout=Float(0.0, 0.5),
    depth=Int(1, 8),
    width=Int(16, 1024, log=True),
    batch=Int(8, 128, step=8),
    optimizer=Categorical(["adam", "sgd", "adamw"]),
    flag=Categorical([True, False, 1, None]),
    prompt=Text("Answer briefly.", max_length=200),
    patch=Code("def f(x):\n    return x\n"),
)


def unit_points(space: Space) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=space.n_dims, max_size=space.n_dims).map(np.array)


def valid_candidates(space: Space) -> st.SearchStrategy[dict]:
    parts = {}
    for name, p in space.items():
        if isinstance(p, Float):
            parts[name] = st.floats(p.low, p.high, allow_nan=False)
        elif isinstance(p, Int):
            parts[name] = st.integers(0, (p.high - p.low) // p.step).map(lambda i, p=p: p.low + i * p.step)
        elif isinstance(p, Categorical):
            parts[name] = st.sampled_from(p.choices)
        else:
            parts[name] = st.text(max_size=p.max_length or 50)
    return st.fixed_dictionaries(parts)


@settings(max_examples=300, deadline=None)
@given(unit_points(MIXED))
def test_every_decoded_point_is_valid(x: np.ndarray) -> None:
    candidate = MIXED.decode(x)
    assert MIXED.problems(candidate) == []


@settings(max_examples=300, deadline=None)
@given(valid_candidates(MIXED))
def test_encode_decode_round_trips(candidate: dict) -> None:
    x = MIXED.encode(candidate)
    assert x.shape == (MIXED.n_dims,)
    assert np.all((x >= -1e-9) & (x <= 1 + 1e-9))
    back = MIXED.decode(x, {k: candidate[k] for k in ("prompt", "patch")})
    for name, param in MIXED.items():
        if isinstance(param, Float):
            assert math.isclose(back[name], candidate[name], rel_tol=1e-9, abs_tol=1e-12)
        else:
            assert back[name] == candidate[name] and type(back[name]) is type(candidate[name])


@settings(max_examples=200, deadline=None)
@given(unit_points(MIXED))
def test_decode_encode_is_stable(x: np.ndarray) -> None:
    """Decoding the re-encoded point gives the same candidate: the encoding is a fixed point."""
    candidate = MIXED.decode(x)
    again = MIXED.decode(MIXED.encode(candidate))
    assert MIXED.key({**again, "dropout": 0, "lr": 0}) == MIXED.key({**candidate, "dropout": 0, "lr": 0})


def test_int_grid_is_sampled_uniformly() -> None:
    p = Int(1, 4)
    values = [p.from_unit(np.array([u])) for u in np.linspace(0, 1, 4000, endpoint=False)]
    counts = np.bincount(values)[1:]
    assert counts.tolist() == [1000, 1000, 1000, 1000]


def test_validation_reports_every_problem_at_once() -> None:
    space = Space(lr=Float(1e-5, 1e-1, log=True), depth=Int(1, 8), opt=Categorical(["adam", "sgd"]))
    with pytest.raises(InvalidCandidate) as info:
        space.validate({"lr": "fast", "depth": 9, "opt": "rmsprop", "extra": 1})
    assert info.value.problems == [
        "lr: 'fast' is not a number",
        "depth: 9 is above the maximum 8",
        "opt: 'rmsprop' is not one of 'adam', 'sgd'",
        "extra: not a parameter of this space (parameters: lr, depth, opt)",
    ]
    assert space.problems({"lr": 0.01}) == [
        "depth: missing (expected integer in [1, 8])",
        "opt: missing (expected one of 'adam', 'sgd')",
    ]


def test_validation_details() -> None:
    space = Space(n=Int(0, 10, step=2), x=Float(0, 1), t=Text("a", max_length=3), b=Categorical([True, 1]))
    assert space.problems({"n": 3, "x": float("nan"), "t": "abcd", "b": 1.0}) == [
        "n: 3 is not on the grid 0, 2, ... (step 2)",
        "x: nan is not a finite number",
        "t: text of 4 characters is longer than the maximum 3",
        "b: 1.0 is not one of True, 1",
    ]
    # Integral floats from JSON are accepted for Int and normalized; booleans are not numbers.
    assert space.validate({"n": 4.0, "x": 1, "t": "ab", "b": True}) == {
        "n": 4,
        "x": 1.0,
        "t": "ab",
        "b": True,
    }
    assert space.problems({"n": True, "x": 0.5, "t": "a", "b": 1}) == ["n: True is not an integer"]


def test_json_schema_of_a_candidate() -> None:
    schema = MIXED.json_schema()
    assert schema["required"] == list(MIXED)
    assert schema["additionalProperties"] is False
    assert schema["properties"]["lr"] == {"type": "number", "minimum": 1e-5, "maximum": 1e-1}
    assert schema["properties"]["depth"] == {"type": "integer", "minimum": 1, "maximum": 8}
    assert schema["properties"]["optimizer"] == {"enum": ["adam", "sgd", "adamw"]}
    assert schema["properties"]["prompt"] == {"type": "string", "maxLength": 200}


def test_text_and_code_have_no_cube_dimensions_and_serialize() -> None:
    assert MIXED.n_dims == 5 + 3 + 4
    assert [n for n, _ in MIXED.text_items()] == ["prompt", "patch"]
    assert Space.from_dict(MIXED.to_dict()) == MIXED
    assert isinstance(Space.from_dict(MIXED.to_dict())["patch"], Code)


# Parameter types of one's own ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Percent(Float):
    """A Float from 0 to 100 unless told otherwise: a refinement, searched as any Float is."""

    low: float = 0.0
    high: float = 100.0

    kind: ClassVar[str] = "percent"


@pytest.fixture
def percent() -> Iterator[type[Percent]]:
    register_param_type(Percent)
    yield Percent
    PARAM_TYPES.unregister("percent")


def test_a_registered_type_is_usable_in_spaces_and_job_files(percent: type[Percent]) -> None:
    assert PARAM_TYPES.names() == ("float", "int", "categorical", "text", "code", "percent")
    space = Space.from_dict({"share": {"type": "percent"}, "cap": {"type": "percent", "high": 50}})
    assert space == Space(share=Percent(), cap=Percent(high=50))
    assert space.to_dict()["share"] == {"type": "percent", "low": 0.0, "high": 100.0, "log": False}
    assert Space.from_dict(space.to_dict()) == space
    assert space.problems(space.decode(np.full(space.n_dims, 0.5))) == []
    with pytest.raises(SpaceError, match=r"^space\.share\.lgo: unknown key for a percent parameter"):
        Space.from_dict({"share": {"type": "percent", "lgo": True}})


def test_an_unknown_type_lists_the_registered_ones(percent: type[Percent]) -> None:
    with pytest.raises(SpaceError) as info:
        Space.from_dict({"x": {"type": "double"}})
    assert str(info.value) == (
        'space.x.type: expected one of "float", "int", "categorical", "text", "code", "percent", got \'double\''
    )


def test_a_table_is_read_past_its_faulty_parameters() -> None:
    # A job check reports every faulty parameter at once, and still knows the names of all of them.
    table = {
        "lr": {"type": "integer", "low": 1, "high": 5},
        "drop": {"type": "float", "low": "0.1", "hihg": 0.5},
        "depth": {"type": "int", "low": 1, "high": 8},
        "a b": {"type": "float", "low": 0, "high": 1},
    }
    read = SpaceTable.read(table)
    assert read.names == ("lr", "drop", "depth", "a b")
    assert read.params == {"depth": Int(1, 8)}
    assert read.problems == (
        'space.lr.type: expected one of "float", "int", "categorical", "text", "code", got \'integer\'',
        "space.drop.hihg: unknown key for a float parameter (allowed: low, high, log)",
        "space.drop.high: missing required key for a float parameter",
        "space.drop.low: expected a number, got '0.1'",
        "space.\"a b\": parameter name 'a b' is not valid: use letters, digits, '_' or '-', starting with a letter "
        "or '_'",
    )
    assert read.space is None
    with pytest.raises(SpaceError) as info:
        Space.from_dict(table)
    assert str(info.value) == "; ".join(read.problems)
    assert SpaceTable.read({"depth": {"type": "int", "low": 1, "high": 8}}).space == Space(depth=Int(1, 8))
    assert SpaceTable.read({}).problems == (
        'space: expected a table of parameters, e.g. lr = { type = "float", low = 1e-5, high = 0.1 }',
    )


def test_a_type_must_refine_a_family_and_have_its_own_kind() -> None:
    @dataclass(frozen=True)
    class Loose:
        kind: ClassVar[str] = "loose"

    @dataclass(frozen=True)
    class Unnamed(Float):
        pass

    with pytest.raises(SpaceError, match="must be a dataclass subclassing Float, Int, Categorical, Text or Code"):
        register_param_type(Loose)  # type: ignore[type-var]
    with pytest.raises(SpaceError, match="needs a kind of its own"):
        register_param_type(Unnamed)
    assert "loose" not in PARAM_TYPES and PARAM_TYPES.names()[-1] == "code"


def test_space_errors_are_tunesmith_errors() -> None:
    for error in (SpaceError("x"), InvalidCandidate(["x: bad"])):
        assert isinstance(error, TunesmithError) and isinstance(error, ValueError)


def test_code_from_a_marked_region_of_a_file(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(
        "import math\n\n# tunesmith: begin solve\ndef solve(x):\n    return x\n# tunesmith: end solve\n"
    )
    code = Code.from_file("slow.py", region="solve", base=tmp_path)
    assert code.default == "def solve(x):\n    return x\n"
    assert code.location == CodeLocation("slow.py", "solve")
    assert "slow.py, region solve" in code.describe()
    assert Space.from_dict(Space(program=code).to_dict())["program"] == code, "the location is part of the space"
    with pytest.raises(SpaceError, match=r"elsewhere/slow\.py does not exist"):
        Code.from_file("slow.py", region="solve", base=tmp_path / "elsewhere")
    with pytest.raises(SpaceError, match="fast"):
        Code.from_file("slow.py", region="fast", base=tmp_path)
    with pytest.raises(SpaceError, match="region needs a file"):
        Code("x = 1\n", region="solve")
