"""A twin's identity rules in the domain: metadata is JSON within bounds, ids are not "."
or "..", and no two ids differ only in case. The engine and the command line hold to them.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from twinkit.cli.testing import run
from twinkit.core.errors import AlreadyExistsError, InvalidTwinError
from twinkit.core.twin import (
    TWIN_ID_PATTERN,
    MetadataLimits,
    validate_metadata,
    validate_twin_id,
)
from twinkit.engine import TwinEngine


def _nested(levels: int) -> dict[str, Any]:
    """Metadata whose objects nest ``levels`` deep (the metadata itself is the first)."""
    metadata: dict[str, Any] = {}
    inner = metadata
    for _ in range(levels - 1):
        inner["n"] = {}
        inner = inner["n"]
    return metadata


# -- metadata -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"a": math.nan}, "metadata.a: NaN is not JSON"),
        ({"a": math.inf}, "metadata.a: Infinity is not JSON"),
        ({"a": [1, {"b c": -math.inf}]}, 'metadata.a[1]["b c"]: -Infinity is not JSON'),
        ({"a": "\ud800"}, "metadata.a: the text has a lone surrogate"),
        ({"ok": {"\udfff": 1}}, 'metadata.ok["\\udfff"]: the key has a lone surrogate'),
        ({1: "x"}, "metadata: a key of type int is not JSON"),
        ({"a": {1, 2}}, "metadata.a: a set is not JSON"),
        ({"a": 10**5000}, "a number with too many digits"),
        (["not", "an", "object"], "metadata must be a JSON object, not list"),
    ],
)
def test_metadata_that_json_cannot_hold_is_refused_naming_the_field(
    metadata: Any, message: str
) -> None:
    # Execute
    with pytest.raises(InvalidTwinError) as refused:
        validate_metadata(metadata)

    # Assert: the message names the field, and can itself be sent as UTF-8
    assert message in str(refused.value)
    str(refused.value).encode("utf-8")


def test_metadata_is_bounded_in_keys_depth_and_bytes() -> None:
    # Prepare
    limits = MetadataLimits()
    nested_keys = {f"k{i}": {"x": i} for i in range(limits.max_keys // 2 + 1)}  # 2 keys each
    exactly_full = {"a": "x" * (limits.max_bytes - len('{"a":""}'))}

    # Execute / Assert
    assert limits == MetadataLimits(64 * 1024, 1000, 16)
    assert validate_metadata({f"k{i}": i for i in range(limits.max_keys)})
    with pytest.raises(InvalidTwinError, match="more than 1000 keys"):
        validate_metadata({f"k{i}": i for i in range(limits.max_keys + 1)})
    with pytest.raises(InvalidTwinError, match="nested objects' keys included"):
        validate_metadata(nested_keys)
    assert validate_metadata(_nested(16))
    with pytest.raises(InvalidTwinError, match=r"^metadata(\.n){16}: nested deeper than 16"):
        validate_metadata(_nested(17))
    assert validate_metadata(exactly_full) is exactly_full
    with pytest.raises(InvalidTwinError, match="larger than 65536 bytes"):
        validate_metadata({"a": "x" * (limits.max_bytes - len('{"a":""}') + 1)})
    with pytest.raises(InvalidTwinError, match="larger than 65536 bytes"):
        validate_metadata({"a": "é" * (limits.max_bytes // 2)})  # 2 bytes each in UTF-8
    with pytest.raises(InvalidTwinError, match="larger than 65536 bytes"):
        validate_metadata({"a": list(range(1_000_000))})  # refused before it is walked


def test_metadata_limits_can_be_set_and_none_checks_only_json() -> None:
    # Prepare
    small = MetadataLimits(max_bytes=20, max_keys=2, max_depth=2)

    # Execute / Assert
    assert validate_metadata({"a": {"b": 1}}, small)
    with pytest.raises(InvalidTwinError, match="more than 2 keys"):
        validate_metadata({"a": 1, "b": 2, "c": 3}, small)
    with pytest.raises(InvalidTwinError, match="deeper than 2"):
        validate_metadata({"a": [[1]]}, small)
    with pytest.raises(InvalidTwinError, match="larger than 20 bytes"):
        validate_metadata({"a": "x" * 20}, small)
    huge = {f"k{i}": "x" * 100 for i in range(5000)}
    assert validate_metadata(huge, limits=None) is huge
    with pytest.raises(InvalidTwinError, match="NaN is not JSON"):
        validate_metadata({"a": math.nan}, limits=None)


FULLWIDTH_P1 = "\uff50\uff11"

# -- ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize("twin_id", [".", ".."])
def test_dot_and_dot_dot_are_not_twin_ids(twin_id: str) -> None:
    with pytest.raises(InvalidTwinError, match=re.escape("(but not '.' or '..')")):
        validate_twin_id(twin_id)


@pytest.mark.parametrize(
    "twin_id", ["...", ".a", "..a", "a.", "a..b", "p-007", "x" * 128, "." + "x" * 127]
)
def test_ids_with_dots_elsewhere_stay_valid(twin_id: str) -> None:
    assert validate_twin_id(twin_id) == twin_id


@pytest.mark.parametrize("twin_id", ["x" * 129, "." + "x" * 128, ".." + "x" * 127, ""])
def test_ids_stay_at_most_128_characters(twin_id: str) -> None:
    with pytest.raises(InvalidTwinError):
        validate_twin_id(twin_id)


def test_ids_are_ascii_so_case_and_unicode_normalisation_agree_everywhere() -> None:
    """No character outside ASCII is allowed in an id: NFKC (fullwidth "p1" is "p1") cannot make
    two ids the same, and lower() is the same in Python, SQLite and PostgreSQL (the
    Kelvin sign "K" lowers to an ASCII "k" in Python only)."""
    # Execute
    allowed = [cp for cp in range(0x80, 0x110000) if TWIN_ID_PATTERN.match(f"a{chr(cp)}")]

    # Assert
    assert allowed == []
    assert unicodedata.normalize("NFKC", FULLWIDTH_P1) == "p1"
    for twin_id in (FULLWIDTH_P1, "\u212a1", "p\u0131"):
        with pytest.raises(InvalidTwinError):
            validate_twin_id(twin_id)


# -- the engine and the command line --------------------------------------------------------


def test_an_id_differing_only_in_case_is_refused_among_the_owners_own_twins(
    engine: TwinEngine,
) -> None:
    # Prepare
    engine.create_twin("p1", "state", "alice")

    # Execute
    with pytest.raises(AlreadyExistsError) as hers:
        engine.create_twin("P1", "state", "alice")
    with pytest.raises(AlreadyExistsError) as same:
        engine.create_twin("alice/p1", "decision")
    bobs = engine.create_twin("P1", "state", "bob")  # another owner's id space

    # Assert
    assert "differs only in case from your twin 'p1'" in str(hers.value)
    assert str(same.value) == "twin 'p1' already exists"
    assert bobs.key == "bob/P1"
    assert [(t.id, t.owner) for t in engine.list_twins()] == [("p1", "alice"), ("P1", "bob")]


@pytest.mark.parametrize("metadata", [{"a": math.nan}, {"a": "\ud800"}, {"\ud800": 1}])
def test_the_engine_refuses_metadata_that_is_not_json_and_stores_nothing(
    engine: TwinEngine, metadata: dict[str, Any]
) -> None:
    # Execute
    with pytest.raises(InvalidTwinError, match=r"^metadata"):
        engine.create_twin("p1", "state", "alice", metadata)

    # Assert
    assert engine.list_twins() == []
    assert engine.verify().entries == 0


def test_the_engine_takes_its_metadata_limits(engine: TwinEngine) -> None:
    # Execute
    with pytest.raises(InvalidTwinError, match="more than 1000 keys"):
        engine.create_twin("p1", "state", metadata={str(i): i for i in range(1001)})
    with pytest.raises(InvalidTwinError, match="more than 1 keys"):
        engine.create_twin(
            "p1", "state", metadata={"a": 1, "b": 2}, metadata_limits=MetadataLimits(max_keys=1)
        )
    twin = engine.create_twin(
        "p2", "state", metadata={"a": [[[1]]]}, metadata_limits=MetadataLimits(max_depth=4)
    )

    # Assert
    assert engine.get_twin("p2").metadata == twin.metadata == {"a": [[[1]]]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metadata", '{"a": NaN}'], "metadata.a: NaN is not JSON"),
        (["--metadata", '{"a": {"b": "\\ud800"}}'], "metadata.a.b: the text has a lone surrogate"),
        # an argument that is not UTF-8 reaches Python with lone surrogates in it
        (["--meta", "note=\udcff"], "metadata.note: the text has a lone surrogate"),
        (["--metadata", json.dumps({str(i): i for i in range(1001)})], "more than 1000 keys"),
    ],
)
def test_the_cli_refuses_metadata_that_is_not_json_or_too_large(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    # Execute
    code, _, err = run(capsys, "twin", "create", "p1", *args, "--db", str(tmp_path / "c.db"))

    # Assert
    assert code == 1
    assert message in " ".join(err.split())
