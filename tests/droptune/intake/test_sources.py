"""Run configuration from object metadata, sidecar, folder droptune.yaml and the deployment."""

from __future__ import annotations

from droptune.intake.event import UploadedObject
from droptune.intake.sources import candidate_files, resolve


def put(bucket, name: str, text: str) -> None:
    bucket.blob(name).upload_from_string(text)


def obj(bucket, name: str, metadata: dict[str, str] | None = None) -> UploadedObject:
    return UploadedObject(bucket.name, name, 1, metadata=metadata or {})


def test_first_source_wins_per_key(gcs_bucket) -> None:
    put(gcs_bucket, "team/chat.droptune.yaml", "epochs: 5\nmax_length: 512\n")
    put(gcs_bucket, "team/droptune.yaml", "epochs: 9\nmax_length: 9\nmin_examples: 2\n")
    resolved = resolve(obj(gcs_bucket, "team/chat.jsonl", {"droptune-epochs": "2"}), "gemini")
    assert resolved.error is None
    config = resolved.config
    assert (config.epochs, config.max_length, config.min_examples) == (2, 512, 2)
    assert config.backend == "gemini"
    base = f"gs://{gcs_bucket.name}/team/"
    assert resolved.sources == {
        "epochs": "object metadata",
        "max_length": base + "chat.droptune.yaml",
        "min_examples": base + "droptune.yaml",
        "backend": "the deployment defaults",
    }


def test_only_the_nearest_folder_config_counts(gcs_bucket) -> None:
    put(gcs_bucket, "droptune.yaml", "epochs: 7\nmin_examples: 3\n")
    put(gcs_bucket, "a/droptune.yaml", "epochs: 4\n")
    config = resolve(obj(gcs_bucket, "a/b/c/data.jsonl"), "custom").config
    assert config.epochs == 4
    assert config.min_examples == 10  # the top-level file is not merged in


def test_metadata_other_than_droptune_keys_is_left_alone(gcs_bucket) -> None:
    resolved = resolve(
        obj(gcs_bucket, "d.jsonl", {"owner": "ana", "droptune-base-model": "Qwen/Qwen3-0.6B"}),
        "custom",
    )
    assert resolved.config.base_model == "Qwen/Qwen3-0.6B"


def test_unknown_key_names_its_source_and_the_likely_key(gcs_bucket) -> None:
    put(gcs_bucket, "t/d.droptune.yaml", "epoch: 2\n")
    resolved = resolve(obj(gcs_bucket, "t/d.jsonl"), "custom")
    assert resolved.config is None
    assert f"gs://{gcs_bucket.name}/t/d.droptune.yaml" in resolved.error
    assert "did you mean 'epochs'" in resolved.error


def test_unknown_metadata_key_is_an_error(gcs_bucket) -> None:
    resolved = resolve(obj(gcs_bucket, "d.jsonl", {"droptune-backnd": "gemini"}), "custom")
    assert "object metadata" in resolved.error and "'backend'" in resolved.error


def test_sources_valid_only_together_make_a_valid_run(gcs_bucket) -> None:
    """The sidecar's test_fraction fails against the default validation_fraction, which the
    object's metadata sets to 0: the merged configuration is what runs."""
    put(gcs_bucket, "f/d.droptune.yaml", "test_fraction: 0.95\n")
    metadata = {"droptune-validation-fraction": "0"}
    resolved = resolve(obj(gcs_bucket, "f/d.jsonl", metadata), "custom")
    assert resolved.error is None
    assert (resolved.config.validation_fraction, resolved.config.test_fraction) == (0, 0.95)
    put(gcs_bucket, "g/d.droptune.yaml", "test_fraction: 0.6\n")  # invalid together
    metadata = {"droptune-validation-fraction": "0.5"}
    resolved = resolve(obj(gcs_bucket, "g/d.jsonl", metadata), "custom")
    assert f"gs://{gcs_bucket.name}/g/d.droptune.yaml" in resolved.error  # it tipped it over
    assert "must leave examples for training" in resolved.error
    # A bad value another source overrides is not the one blamed.
    put(gcs_bucket, "h/d.droptune.yaml", "epochs: many\n")
    put(gcs_bucket, "h/droptune.yaml", "test_fraction: 0.95\n")
    resolved = resolve(obj(gcs_bucket, "h/d.jsonl", {"droptune-epochs": "2"}), "custom")
    assert f"gs://{gcs_bucket.name}/h/droptune.yaml" in resolved.error
    assert "must leave examples for training" in resolved.error
    # ... nor a source whose value only fails against defaults another source sets.
    put(gcs_bucket, "i/d.droptune.yaml", "test_fraction: 0.95\n")
    put(gcs_bucket, "i/droptune.yaml", "epochs: many\n")
    metadata = {"droptune-validation-fraction": "0"}
    resolved = resolve(obj(gcs_bucket, "i/d.jsonl", metadata), "custom")
    assert f"gs://{gcs_bucket.name}/i/droptune.yaml" in resolved.error
    assert "epochs must be an integer" in resolved.error


def test_a_yml_sidecar_is_read_and_two_sidecars_are_an_error(gcs_bucket) -> None:
    """An upload named .droptune.yml was taken for a config file, then never read."""
    put(gcs_bucket, "y/d.droptune.yml", "backend: gemini\nepochs: 7\n")
    resolved = resolve(obj(gcs_bucket, "y/d.jsonl"), "custom")
    assert (resolved.config.backend, resolved.config.epochs) == ("gemini", 7)
    put(gcs_bucket, "y/d.droptune.yaml", "epochs: 2\n")
    resolved = resolve(obj(gcs_bucket, "y/d.jsonl"), "custom")
    assert "two sidecars for one file" in resolved.error and "keep one" in resolved.error


def test_a_sidecar_name_too_long_for_cloud_storage_is_not_asked_for(gcs_bucket) -> None:
    """A 1,024-byte data name is legal; its sidecar's is not, and a real bucket answers such
    a read with 400, not 404: it is not looked for."""
    name = "a/" + "x" * (1024 - len("a/") - len(".jsonl")) + ".jsonl"
    assert candidate_files(obj(gcs_bucket, name))[0] == []
    deep = "d" * 1013 + "/a.jsonl"  # legal; its folder's droptune.yaml would not be
    assert candidate_files(obj(gcs_bucket, deep))[1] == ["droptune.yaml"]
    resolved = resolve(obj(gcs_bucket, name), "custom")
    assert resolved.error is None and resolved.config.epochs is None  # sized to the data


def test_bad_value_and_bad_yaml_are_errors(gcs_bucket) -> None:
    resolved = resolve(obj(gcs_bucket, "d.jsonl", {"droptune-epochs": "many"}), "custom")
    assert "epochs must be an integer" in resolved.error
    put(gcs_bucket, "y/droptune.yaml", "epochs: [1\n")
    resolved = resolve(obj(gcs_bucket, "y/d.jsonl"), "custom")
    assert "is not valid YAML" in resolved.error and "line" in resolved.error


def test_bad_deployment_default_is_an_error(gcs_bucket) -> None:
    resolved = resolve(obj(gcs_bucket, "d.jsonl"), "tpu")
    assert "the deployment defaults" in resolved.error


def test_relative_validation_file_is_read_next_to_the_data(gcs_bucket) -> None:
    put(gcs_bucket, "t/d.droptune.yaml", "validation_file: _holdout/val.jsonl\n")
    config = resolve(obj(gcs_bucket, "t/d.jsonl"), "custom").config
    assert config.validation_file == f"gs://{gcs_bucket.name}/t/_holdout/val.jsonl"


def test_validation_file_may_not_leave_the_bucket_by_path(gcs_bucket) -> None:
    for bad in ["/etc/passwd", "../x.jsonl", "file:///etc/passwd"]:
        resolved = resolve(obj(gcs_bucket, "d.jsonl", {"droptune-validation-file": bad}), "custom")
        assert resolved.config is None and "validation_file" in resolved.error, bad


def test_yaml_number_keys_are_read_as_text(gcs_bucket) -> None:
    put(gcs_bucket, "csv/d.droptune.yaml", "column_map: {0: prompt, 1: completion}\n")
    config = resolve(obj(gcs_bucket, "csv/d.csv"), "custom").config
    assert config.column_map == {"0": "prompt", "1": "completion"}
    put(gcs_bucket, "n/droptune.yaml", "1: x\n")
    assert "unknown key(s)" in resolve(obj(gcs_bucket, "n/d.jsonl"), "custom").error


def test_a_number_too_large_to_store_is_an_error_that_names_it(gcs_bucket) -> None:
    huge = {"droptune-epochs": "99999999999999999999999"}
    resolved = resolve(obj(gcs_bucket, "d.jsonl", huge), "custom")
    assert resolved.config is None
    assert resolved.error.startswith("object metadata: epochs") and "64-bit" in resolved.error
