"""terraform/monitoring.tf: alerts that a first apply can create in one go.

Monitoring refuses an alert condition on a log-based metric for up to 10 minutes after the
metric is created (404 "Cannot find metric(s)"; terraform-provider-google issue 11102), and no
`depends_on` waits for that: the alerts on runs that FAILED match the log lines instead.
"""

from __future__ import annotations

from tests.terraform.module import block, load


def policies():
    return load().resources["google_monitoring_alert_policy"].items()


def conditions(body):
    """Each condition of a policy, written out or in a `dynamic "conditions"` block."""
    found = list(body.get("conditions", []))
    for dynamic in body.get("dynamic", []):
        if "conditions" in dynamic:
            found.append(block(dynamic["conditions"]["content"]))
    return found


def test_no_alert_condition_needs_a_log_based_metric_of_this_module():
    module = load()
    user_metrics = ["logging.googleapis.com/user/", "intake_state_metric", "run_state_metric"]
    for name, body in policies():
        for condition in conditions(body):
            for kind in (
                "condition_threshold",
                "condition_absent",
                "condition_monitoring_query_language",
            ):
                if kind in condition:
                    text = str(block(condition[kind]))
                    hits = [m for m in user_metrics if m in text]
                    assert not hits, (
                        f"{name}: a {kind} on a log-based metric ({hits}) 404s on a first apply"
                    )
    assert module.resources["google_logging_metric"], "the dashboard's metrics are still there"


def test_runs_that_failed_alert_through_log_match_conditions_one_per_policy():
    body = load().resource("google_monitoring_alert_policy.run_failed")
    assert body["for_each"]
    (condition,) = conditions(body)
    matched = block(condition["condition_matched_log"])
    assert "label_extractors" in matched  # the notification names the run
    strategy = block(body["alert_strategy"])
    assert block(strategy["notification_rate_limit"])["period"], "required for log-match policies"
    units = load().locals["failed_run_logs"]
    assert set(units) == {"upload", "workflow"}
    assert 'labels.state="FAILED"' in units["upload"]["filter"]
    assert 'jsonPayload.state="FAILED"' in units["workflow"]["filter"]


def test_metric_conditions_use_only_built_in_metrics():
    """Built-in metrics exist as soon as their API is enabled."""
    built_in = ('metric.type="workflows.googleapis.com/', 'metric.type="pubsub.googleapis.com/')
    filters = []
    for _, body in policies():
        for condition in conditions(body):
            if "condition_threshold" in condition:
                filters.append(block(condition["condition_threshold"])["filter"])
    assert filters == ["${conditions.value}"]  # the dynamic block over failure_conditions
    for name, metric in load().locals["failure_conditions"].items():
        assert metric.startswith(built_in), f"{name}: {metric}"
