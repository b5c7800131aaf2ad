"""One delivery of an upload event: claim the run, validate, write the run folder, publish.

Deliveries are at least once, may come twice at the same time, and an instance may die at any
line. So every step can be repeated: `run.json` is created only if absent (the claim), the
data files and report are rewritten with the same content, and `status.json` moves on only
through the lease (see `lease.py`). A redelivery for a finished run does nothing; one for a run
whose attempt died finishes it; errors are raised so that the platform delivers again.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from droptune import __version__, pipeline
from droptune.cloud import gcs, pubsub
from droptune.config import RunConfig
from droptune.errors import DroptuneError, PreconditionFailed, SourceError, SourceNotFound
from droptune.intake.event import UploadedObject, ignore_reason
from droptune.intake.lease import Lease, LeaseLost, StatusStore, lease_expired, lease_fields
from droptune.intake.settings import IntakeSettings
from droptune.intake.sources import resolve
from droptune.issues import CATALOGUE, Issue, Severity
from droptune.log import get_logger
from droptune.report import Report, unread_report
from droptune.runs import RunFolder, RunMessage, RunState, RunStatus, now_iso, run_id_for
from droptune.tokens import TokenCounter, TokenizerError, counter_for

log = get_logger("droptune.intake")


class RunBusy(DroptuneError):
    """Another attempt is still working on this run; the delivery should be retried later."""


class RunIdCollision(DroptuneError):
    """Two different objects mapped to one run id (a hash collision): refuse to mix them."""


@dataclass(frozen=True)
class Outcome:
    action: str  # ignored | queued | rejected | failed | none (someone else did or does it)
    run_id: str | None = None
    state: RunState | None = None
    detail: str = ""


def handle_upload(
    obj: UploadedObject, settings: IntakeSettings, counter: TokenCounter | None = None
) -> Outcome:
    """Turn one finalize event into a QUEUED or REJECTED run, or nothing for non-data."""
    reason = ignore_reason(obj, settings.runs_bucket, settings.uploads_bucket)
    if reason:
        log.info(f"ignored {obj.uri}: {reason}", object=obj.uri)
        return Outcome("ignored", detail=reason)
    return Delivery(obj, settings, counter).run()


def preload(settings: IntakeSettings) -> float | None:
    """Load the tokenizer that uploads on the deployment's defaults count with (its default
    backend's default base model), so the first upload an instance takes does not wait for
    it; the seconds it took, or None when `settings.preload_tokenizer` is off. A model that
    cannot load here is logged and left to each upload to report."""
    if not settings.preload_tokenizer:
        return None
    config = RunConfig(backend=settings.default_backend)
    started = time.perf_counter()
    try:
        counter_for(config.backend, config.base_model)
    except TokenizerError as exc:
        log.warning(f"preloading the tokenizer failed; uploads will load it: {exc}")
        return None
    seconds = time.perf_counter() - started
    log.info(f"preloaded the tokenizer of {config.base_model} in {seconds:.1f} s")
    return seconds


class Delivery:
    def __init__(
        self, obj: UploadedObject, settings: IntakeSettings, counter: TokenCounter | None
    ) -> None:
        self.obj, self.settings, self.counter = obj, settings, counter
        self.run_id = run_id_for(obj.bucket, obj.name, obj.generation)
        self.folder = RunFolder.in_bucket(settings.runs_bucket, self.run_id)
        self.attempt = uuid.uuid4().hex
        self.store = StatusStore(self.folder.status_json)
        self.state: RunState | None = None  # as last read, when this delivery did not act

    def run(self) -> Outcome:
        """Claim, lease, work; every failure is logged here once, labelled with the run and
        the object, then raised so that the platform delivers the event again."""
        try:
            record = self._claim()
            status = self._acquire()
        except RunBusy as exc:
            log.warning(f"{exc}; a redelivery of the event tries again", **self._labels())
            raise
        except Exception as exc:
            log.error(
                f"claiming the run failed: {type(exc).__name__}: {exc}; "
                "a redelivery of the event tries again",
                exc_info=True,
                **self._labels(),
            )
            raise
        if status is None:
            return Outcome("none", self.run_id, self.state, f"run already {self.state}")
        with Lease(self.store, status, self.attempt, self.settings.lease_seconds) as lease:
            try:
                return self._work(record, lease)
            except LeaseLost:
                log.warning("another attempt took this run over; stopping", **self._labels())
                return Outcome("none", self.run_id, None, "taken over by another attempt")
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                tries = int(status.extra.get("attempts", 1))
                if tries >= self.settings.max_attempts:  # the last: no redelivery would help
                    return self._fail(lease, tries, error)
                lease.release(error)
                log.error(
                    f"attempt failed: {error}; a redelivery of the event resumes the run",
                    exc_info=True,
                    **self._labels(),
                )
                raise

    def _fail(self, lease: Lease, tries: int, error: str) -> Outcome:
        """The last attempt's error ends the run FAILED, as the next delivery would have."""
        log.error(f"attempt {tries} of {tries} failed: {error}", exc_info=True, **self._labels())
        detail = f"validation did not finish in {tries} attempts"
        lease.transition(RunState.FAILED, detail, {"message": error[:2000]})
        self.state = RunState.FAILED
        self._log_state(lease.status, "ERROR")
        return Outcome("failed", self.run_id, RunState.FAILED, detail)

    # --- claim and lease ----------------------------------------------------------------
    def _claim(self) -> dict[str, Any]:
        """The run's record: `run.json` as it is, or created now (only if still absent).

        A redelivery reads the record its first delivery wrote, so the configuration is
        resolved once per run, and a sidecar edited in between does not change a run.
        """
        existing = self._record()
        if existing is not None:
            return existing
        resolved = resolve(self.obj, self.settings.default_backend)
        record = {
            "run_id": self.run_id,
            "run_uri": self.folder.uri,
            "source": self.obj.to_dict(),
            "config": resolved.config.to_dict() if resolved.config else None,
            "config_sources": resolved.sources,
            "config_error": resolved.error,
            "created_at": now_iso(),
            "claimed_by": self.attempt,
            "droptune_version": __version__,
        }
        data = orjson.dumps(record, option=orjson.OPT_INDENT_2)
        try:
            gcs.write_bytes(self.folder.run_json, data, if_generation_match=0)
        except PreconditionFailed:  # a concurrent delivery claimed it first
            existing = self._record()
            if existing is None:
                raise RunBusy(f"{self.folder.run_json} vanished after the claim") from None
            return existing
        log.info(f"claimed run {self.run_id} for {self.obj.uri}", **self._labels())
        return record

    def _record(self) -> dict[str, Any] | None:
        """`run.json` if it exists, after checking that it is this object's run."""
        found = gcs.read_bytes(self.folder.run_json)
        if found is None:
            return None
        existing = orjson.loads(found[0])
        source = existing.get("source", {})
        ours = (self.obj.bucket, self.obj.name, str(self.obj.generation))
        if (source.get("bucket"), source.get("name"), source.get("generation")) != ours:
            raise RunIdCollision(
                f"{self.folder.uri} belongs to {source.get('uri')}, not {self.obj.uri}"
            )
        return existing

    def _acquire(self) -> RunStatus | None:
        """The run's status with our lease on it, or None when there is nothing left to do."""
        deadline = time.monotonic() + self.settings.max_wait_seconds
        lease = self.settings.lease_seconds
        while True:
            status = self.store.read()
            if status is None:
                status = RunStatus.start(f"validating {self.obj.uri}")
                status.extra.update(lease=lease_fields(self.attempt, lease), attempts=1)
                if self.store.create(status):
                    self._log_state(status)
                    return status
                continue
            self.state = status.state
            if status.state != RunState.VALIDATING:
                log.info(
                    f"run {self.run_id} is already {status.state}; nothing to do", **self._labels()
                )
                return None
            if not lease_expired(status):
                if time.monotonic() > deadline:
                    raise RunBusy(
                        f"run {self.run_id} is being validated by another attempt; retry later"
                    )
                time.sleep(min(1.0, lease / 4))
                continue
            attempts = int(status.extra.get("attempts", 0)) + 1
            if attempts > self.settings.max_attempts:
                if self._give_up(status):
                    return None
                continue
            status.extra.update(lease=lease_fields(self.attempt, lease), attempts=attempts)
            if self.store.replace(status):
                log.info(
                    f"run {self.run_id}: attempt {attempts} takes over from a stopped one",
                    **self._labels(),
                )
                return status

    def _give_up(self, status: RunStatus) -> bool:
        """FAILED after too many attempts, with the last one's error; False if someone moved first."""
        tries = status.extra.get("attempts", 0)
        status.extra.pop("lease", None)
        last = status.extra.get("last_error", "every attempt stopped without finishing")
        status.advance(
            RunState.FAILED, f"validation did not finish in {tries} attempts", {"message": last}
        )
        if not self.store.replace(status):
            return False
        self.state = RunState.FAILED
        self._log_state(status, "ERROR")
        return True

    # --- the work -----------------------------------------------------------------------
    def _work(self, record: dict[str, Any], lease: Lease) -> Outcome:
        config, report = self._validate(record)
        if report.valid and config is not None:
            return self._queue(config, report, lease)
        return self._reject(report, lease)

    def _validate(self, record: dict[str, Any]) -> tuple[RunConfig | None, Report]:
        obj, folder = self.obj, self.folder.root
        if record.get("config_error"):
            issue = Issue("invalid_config", record["config_error"], file=obj.uri)
            report = unread_report(obj.uri, self.settings.default_backend, "", issue, obj.size)
            pipeline.write_report(report, folder)
            return None, report
        config = RunConfig.from_mapping(record["config"], source=self.folder.run_json)
        issue = self._too_large("the file", obj.uri, obj.size)
        if issue is None:
            config, issue = self._pin_validation_file(config)
        if issue is None:
            try:
                return config, pipeline.prepare(obj.uri, config, folder, counter=self.counter)
            except SourceNotFound as exc:
                issue = Issue("source_unavailable", str(exc), file=obj.uri)
        report = unread_report(obj.uri, config.backend, config.base_model or "", issue, obj.size)
        pipeline.write_report(report, folder)
        return config, report

    def _pin_validation_file(self, config: RunConfig) -> tuple[RunConfig, Issue | None]:
        """The run's own validation file, looked at before the data is read: it must be there,
        readable by the function, and within the same size limit as uploads. The config that
        comes back reads the generation looked at, so a file replaced meanwhile is not used."""
        uri = config.validation_file
        if uri is None:
            return config, None
        try:
            pinned, size = gcs.pin(uri)
        except SourceError as exc:  # missing, a bad URI, no permission: the setting needs fixing
            return config, Issue("source_unavailable", f"validation_file: {exc}", file=uri)
        issue = self._too_large("the validation file", uri, size)
        return dataclasses.replace(config, validation_file=pinned), issue

    def _too_large(self, what: str, uri: str, size: int | None) -> Issue | None:
        """`file_too_large` for a file over the upload limit, which is then not read."""
        cap = self.settings.max_upload_bytes
        if size is None or size <= cap:
            return None
        message = f"{what} is {size:,} bytes; the limit is {cap:,} (DROPTUNE_MAX_UPLOAD_BYTES)"
        return Issue("file_too_large", message, file=uri)

    def _queue(self, config: RunConfig, report: Report, lease: Lease) -> Outcome:
        message = RunMessage(self.run_id, self.folder.uri, config.backend)
        lease.renew()  # a full lease ahead, so no one takes over while we publish
        message_id = pubsub.publish(
            self.settings.topic, message.data, message.attributes, self.settings.publish_timeout
        )
        splits = report.counts.get("splits", {})
        detail = (
            f"{report.counts['valid']:,} valid examples ("
            + ", ".join(f"{name} {n:,}" for name, n in splits.items())
            + f"); queued for the {config.backend} backend"
        )
        lease.transition(RunState.QUEUED, detail, message_id=message_id)
        self._log_state(lease.status, backend=config.backend)
        return Outcome("queued", self.run_id, RunState.QUEUED, detail)

    def _reject(self, report: Report, lease: Lease) -> Outcome:
        errors = [i for i in report.issues if i.severity == Severity.ERROR]
        first = errors[0] if errors else None
        codes = ", ".join(
            f"{code} ({n})"
            for code, n in report.issue_counts.items()
            if CATALOGUE[code].severity == Severity.ERROR
        )
        detail = f"invalid data: {report.errors:,} error(s): {codes}; see validation/report.md"
        error = {"report": self.folder.path("validation", "report.md")}
        if first is not None:
            error.update(
                {
                    k: v
                    for k, v in first.to_dict().items()
                    if k in ("code", "message", "line", "path")
                }
            )
        lease.transition(RunState.REJECTED, detail, error=error)
        self._log_state(lease.status, "WARNING")
        return Outcome("rejected", self.run_id, RunState.REJECTED, detail)

    # --- logs ---------------------------------------------------------------------------
    def _labels(self, **more: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "object": self.obj.uri, **more}

    def _log_state(self, status: RunStatus, severity: str = "INFO", **more: Any) -> None:
        write = {"INFO": log.info, "WARNING": log.warning, "ERROR": log.error}[severity]
        write(
            f"run {self.run_id} {status.state}: {status.detail}",
            **self._labels(state=status.state.value, **more),
        )
