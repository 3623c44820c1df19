"""A build from the store into the local cache: verified, reused, refused when it is not what its manifest says."""

from __future__ import annotations

import pytest

from jobs.core.store import keys
from jobs.core.spec.audiences import audience_prompt
from jobs.core.store.registry import IntegrityError, RegistryError, promote
from jobs.serve import ServeError
from jobs.serve.builds import check_one_base, open_build, pick_tags
from tests.serve.conftest import ADAPTER_FILES, commit_fake_build


def test_a_build_is_fetched_verified_and_then_served_from_the_cache(fake_store, smoke_spec_dict):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    build = open_build(fake_store, "good")
    assert (build.artifact("adapter") / "adapter_model.safetensors").read_bytes() == b"weights"
    assert build.passed and build.spec.base_model.id == "tiny-qwen2"
    # The cache is keyed by tag and manifest hash: a second use needs nothing from the store's artifact files.
    (fake_store.root / keys.artifact_prefix("good", "adapter") / "adapter_model.safetensors").unlink()
    assert open_build(fake_store, "good").folder == build.folder


def test_a_damaged_cache_is_fetched_again(fake_store, smoke_spec_dict):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    cached = open_build(fake_store, "good").artifact("adapter") / "adapter_model.safetensors"
    cached.write_bytes(b"edited by hand")
    assert open_build(fake_store, "good").artifact("adapter").joinpath("adapter_model.safetensors").read_bytes() \
        == b"weights"


def test_a_tampered_store_file_is_refused_and_nothing_is_cached(fake_store, smoke_spec_dict):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    fake_store.put_bytes(keys.artifact_prefix("good", "adapter") + "adapter_model.safetensors", b"swapped")
    with pytest.raises(IntegrityError, match=r"adapter_model.safetensors \(sha256 differs"):
        open_build(fake_store, "good")
    assert not list((fake_store.root.parent / "cache" / "builds").glob("good-*/adapter"))


def test_unknown_and_incomplete_tags_are_refused_naming_the_complete_ones(fake_store, smoke_spec_dict):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    fake_store.put_bytes(keys.artifact_prefix("half", "adapter") + "adapter_config.json", b"{}")  # no manifest
    for tag in ("nope", "half"):
        with pytest.raises(RegistryError, match=rf"build '{tag}' is not complete .*complete builds: good"):
            open_build(fake_store, tag)


def test_no_version_means_the_promoted_build(fake_store, smoke_spec_dict):
    # complete (promote re-hashes every artifact of the build first)
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES, "dataset": {"train.parquet": b"x"},
                                                            "report": {"metrics.json": b"{}"}})
    with pytest.raises(ServeError, match="no build is promoted .*complete builds: good"):
        pick_tags(fake_store, None)
    promote(fake_store, "good")
    assert pick_tags(fake_store, "") == ["good"]
    assert pick_tags(fake_store, "a, b") == ["a", "b"]
    with pytest.raises(ServeError, match="named twice"):
        pick_tags(fake_store, "a,a")


def test_builds_on_different_bases_cannot_share_one(fake_store, smoke_spec_dict):
    other = {**smoke_spec_dict, "train": {**smoke_spec_dict["train"], "compute_dtype": "float16"}}
    commit_fake_build(fake_store, "a", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    commit_fake_build(fake_store, "b", other, {"adapter": ADAPTER_FILES})
    builds = [open_build(fake_store, t) for t in ("a", "b")]
    with pytest.raises(ServeError, match="builds a and b were trained on different bases.*float16"):
        check_one_base(builds)
    check_one_base([builds[0], open_build(fake_store, "a")])


def test_a_cluster_builds_paths_are_not_needed_to_serve_it(fake_store, smoke_spec_dict):
    spec = {**smoke_spec_dict, "curate": {**smoke_spec_dict["curate"], "sources": ["/app/data/raw"],
                                           "system_prompt": "You answer from the thesis."},
            "eval": {**smoke_spec_dict["eval"], "suite": "/app/data/eval/core.yaml"}}
    commit_fake_build(fake_store, "cluster", spec, {"adapter": ADAPTER_FILES}, status="failed-gate")
    build = open_build(fake_store, "cluster")
    assert (build.spec.train.quantization, build.spec.train.compute_dtype) == ("nf4", "float32")
    assert build.system_prompt() == "You answer from the thesis."
    student = audience_prompt("student")
    assert build.system_prompt(student) == f"You answer from the thesis. {student}"
    assert not build.passed and "FAILED its eval gate" in build.label()
