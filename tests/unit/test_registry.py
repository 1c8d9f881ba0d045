"""The model registry: versions on disk, the promoted pointer, promotion history and rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ModelError, NoModel, UnknownVersion
from models.registry import ModelRegistry, ModelVersion

pytestmark = pytest.mark.unit


def _register(registry: ModelRegistry, tag: str) -> ModelVersion:
    return registry.register(f"tree model {tag}\n", {"tag": tag, "features_hash": "abc"})


def test_empty_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.versions() == []
    assert registry.promoted_version() is None
    with pytest.raises(NoModel):
        registry.live()
    with pytest.raises(NoModel):
        registry.rollback()


def test_register_stores_model_and_meta(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    version = _register(registry, "a")
    assert version.path == tmp_path / "models" / version.version
    assert (version.path / "model.txt").read_text() == "tree model a\n"
    assert version.meta["tag"] == "a"
    assert version.meta["features_hash"] == "abc"
    assert version.meta["version"] == version.version
    assert isinstance(version.meta["created_s"], float)
    assert not list(version.path.glob("*.tmp"))  # written through a temporary file, nothing left over
    # registering does not promote
    assert registry.promoted_version() is None
    again = registry.get(version.version)
    assert again.version == version.version
    assert again.meta == version.meta


def test_register_does_not_change_the_callers_meta(tmp_path: Path) -> None:
    meta = {"tag": "x"}
    ModelRegistry(tmp_path).register("m", meta)
    assert meta == {"tag": "x"}


def test_list_is_oldest_first_with_unique_names(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    made = [_register(registry, tag) for tag in "abcd"]
    listed = registry.versions()
    assert [v.version for v in listed] == [v.version for v in made]
    assert [v.meta["tag"] for v in listed] == list("abcd")
    assert len({v.version for v in listed}) == 4
    assert [v.version for v in listed] == sorted(v.version for v in listed)


def test_live_without_promotion_is_the_newest(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _register(registry, "a")
    newest = _register(registry, "b")
    assert registry.promoted_version() is None
    assert registry.live().version == newest.version
    assert registry.live().meta["tag"] == "b"


def test_promote_then_live(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a = _register(registry, "a")
    _register(registry, "b")
    registry.promote(a.version)
    assert registry.promoted_version() == a.version
    # promoted wins over newer unpromoted versions
    assert registry.live().version == a.version
    assert registry.live().meta["tag"] == "a"
    # the pointer survives a fresh registry object (another process)
    assert ModelRegistry(tmp_path).live().version == a.version


def test_promote_unknown_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a = _register(registry, "a")
    registry.promote(a.version)
    with pytest.raises(UnknownVersion):
        registry.promote("v20990101-000000-999")
    with pytest.raises(UnknownVersion):
        registry.get("nope")
    assert issubclass(UnknownVersion, ModelError)
    # a failed promotion changes nothing
    assert registry.promoted_version() == a.version
    with pytest.raises(NoModel):
        registry.rollback()


def test_promote_unknown_version_on_empty_registry(tmp_path: Path) -> None:
    with pytest.raises(UnknownVersion):
        ModelRegistry(tmp_path / "missing").promote("v1")


def test_rollback_walks_back_through_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a, b, c = (_register(registry, tag) for tag in "abc")
    registry.promote(a.version)
    registry.promote(b.version)
    registry.promote(c.version)
    assert registry.live().version == c.version

    assert registry.rollback() == b.version
    assert registry.promoted_version() == b.version
    assert registry.live().version == b.version

    assert registry.rollback() == a.version
    assert registry.live().version == a.version

    with pytest.raises(NoModel):
        registry.rollback()
    assert registry.live().version == a.version  # a failed rollback leaves the live model alone


def test_rollback_with_no_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a = _register(registry, "a")
    with pytest.raises(NoModel):
        registry.rollback()  # nothing ever promoted
    registry.promote(a.version)
    with pytest.raises(NoModel):
        registry.rollback()  # only one promotion: nothing earlier


def test_promoting_the_live_version_again_adds_no_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a, b = _register(registry, "a"), _register(registry, "b")
    registry.promote(a.version)
    registry.promote(b.version)
    registry.promote(b.version)
    registry.promote(b.version)
    assert registry.rollback() == a.version
    with pytest.raises(NoModel):
        registry.rollback()


def test_promote_after_rollback(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a, b, c = (_register(registry, tag) for tag in "abc")
    registry.promote(a.version)
    registry.promote(b.version)
    assert registry.rollback() == a.version
    registry.promote(c.version)
    assert registry.live().version == c.version
    assert registry.rollback() == a.version
    with pytest.raises(NoModel):
        registry.rollback()


def test_register_after_promotion_keeps_the_promoted_live(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    a = _register(registry, "a")
    registry.promote(a.version)
    newer = _register(registry, "b")
    assert registry.live().version == a.version
    assert [v.version for v in registry.versions()][-1] == newer.version


def test_empty_pointer_file_means_nothing_promoted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    _register(registry, "a")
    b = _register(registry, "b")
    (tmp_path / "PROMOTED").write_text("\n")
    assert registry.promoted_version() is None
    assert registry.live().version == b.version
