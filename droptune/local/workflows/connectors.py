"""`googleapis.*` connectors, resolved from Google's API discovery documents.

`googleapis.storage.v1.objects.insert` names a service, a version, a resource path and a
method; the discovery document of `storage.v1` says its HTTP method, URL template and
parameters. Arguments named in the template go into the path, other known parameters into the
query, and `body` is the request body, as the service's connectors take them. The documents
come from `google-api-python-client`, which ships every public one for offline use (extra
`droptune[local]`); droptune keeps no copy.

Requests go to a root URL per service (`Runtime.connector_roots`: a local server in local
mode, Google otherwise). Like the real connectors, methods that answer with a long-running
operation wait for it, and so do those that create a Vertex AI job (`customJobs.create`,
`tuningJobs.create`, `hyperparameterTuningJobs.create`: Google's reference says each waits
until the job is complete, fails, or times out), polling the job until its state is final
and answering with it (`connector_params`: `timeout`, `polling_policy`, `skip_polling`, which
answers at once with what the first request returned). Cloud Storage uploads
(`uploadType: media`) and downloads (`alt: media`) carry the data itself.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from functools import cache
from importlib import resources
from typing import Any

import requests

from droptune.local.workflows import http
from droptune.local.workflows.errors import WorkflowRaise, error
from droptune.local.workflows.stdlib import Runtime

_TEMPLATE = re.compile(r"\{(\+?)([A-Za-z0-9_.]+)\}")
_UNSAFE_IN_PATH = re.compile(r"[/?#\s]")  # what changes a URL when put in its path as it is
LRO = "GoogleLongrunningOperation"
DEFAULT_POLLING = {"initial_delay": 1.0, "multiplier": 1.25, "max_delay": 60.0}
DEFAULT_CONNECTOR_TIMEOUT = 1800.0  # seconds a connector waits for an operation
WAITS_FOR_THE_JOB = (  # Vertex AI methods whose connectors wait for the job they create
    ".customJobs.create",
    ".tuningJobs.create",
    ".hyperparameterTuningJobs.create",
)
FINAL_JOB_STATES = frozenset(
    {
        "JOB_STATE_SUCCEEDED",
        "JOB_STATE_FAILED",
        "JOB_STATE_CANCELLED",
        "JOB_STATE_EXPIRED",
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    }
)


@cache
def discovery(service: str, version: str) -> dict[str, Any]:
    try:
        documents = resources.files("googleapiclient") / "discovery_cache" / "documents"
    except ModuleNotFoundError:
        raise error(
            "SystemError",
            "connectors need Google's discovery documents: pip install 'droptune[local]'",
        ) from None
    path = documents / f"{service}.{version}.json"
    if not path.is_file():
        raise error("KeyError", f"no Google API named {service} {version}")
    return json.loads(path.read_text())


def resolve(name: str) -> tuple[dict[str, Any], dict[str, Any], str, str]:
    """(discovery document, method, service, version) of `googleapis.<service>.<version>.<...>`."""
    parts = name.split(".")
    if len(parts) < 5 or parts[0] != "googleapis":
        raise error(
            "KeyError",
            f"{name}: connectors are named googleapis.<service>.<version>.<resource>.<method>",
        )
    service, version, *path, method_name = parts[1:]
    document = discovery(service, version)
    node: dict[str, Any] = document
    for resource in path:
        node = node.get("resources", {}).get(resource)
        if node is None:
            raise error("KeyError", f"{name}: {service} {version} has no resource {resource!r}")
    method = node.get("methods", {}).get(method_name)
    if method is None:
        raise error(
            "KeyError",
            f"{name}: no method {method_name!r}; it has {', '.join(node.get('methods', {}))}",
        )
    return document, method, service, version


def expand(template: str, args: dict[str, Any], used: set[str]) -> str:
    """Fill `{+name}` (a resource name: slashes kept) and `{name}` from `args`.

    Cloud Workflows' connectors put a `{name}` value into the path as it is given, so a value
    with a slash (an object name in a folder) addresses another path, `?` or `#` end the path,
    and white space is no URL at all: the workflow must pass `text.url_encode(name)`. Such a
    value is refused here with that advice, rather than encoded for it, which would hide the
    mistake until it runs in the cloud.
    """

    def fill(match: re.Match[str]) -> str:
        reserved, key = match.groups()
        if key not in args:
            raise error("KeyError", f"missing argument {key!r} for {template}")
        used.add(key)
        value = str(args[key])
        if reserved:
            return urllib.parse.quote(value, safe="/")
        if unsafe := _UNSAFE_IN_PATH.search(value):
            raise error(
                "ValueError",
                f"{key} {value!r} goes into the path {template} as it is, and its "
                f"{unsafe.group()!r} makes it another URL: pass ${{text.url_encode(...)}}",
            )
        return value

    return _TEMPLATE.sub(fill, template)


class Connectors:
    def __init__(self, runtime: Runtime, session: requests.Session | None = None) -> None:
        self.runtime = runtime
        self.session = session or requests.Session()

    def root(self, document: dict[str, Any], service: str, args: dict[str, Any]) -> str:
        override = self.runtime.connector_roots.get(service)
        if override:
            return override.rstrip("/") + "/"
        root = document["rootUrl"]
        region = args.get("region") or args.get("location")
        if service == "aiplatform" and region:  # Vertex AI answers on regional endpoints
            root = root.replace("https://", f"https://{region}-", 1)
        return root

    def call(self, name: str, kwargs: dict[str, Any]) -> Any:
        document, method, service, _ = resolve(name)
        args = dict(kwargs)
        connector = args.pop("connector_params", None) or {}
        body = args.pop("body", None)
        root = self.root(document, service, args)
        used: set[str] = set()
        upload = args.get("uploadType") == "media" and method.get("supportsMediaUpload")
        if upload:
            path = method["mediaUpload"]["protocols"]["simple"]["path"].lstrip("/")
            url = root + expand(path, args, used)
        else:
            url = root + document.get("servicePath", "") + expand(method["path"], args, used)
        parameters = method.get("parameters", {})
        query = {
            k: v
            for k, v in args.items()
            if k not in used and (k in parameters or k in ("uploadType", "alt"))
        }
        unknown = set(args) - used - set(query) - {"region", "location"}
        if unknown:
            raise error("TypeError", f"{name}: unexpected argument(s) {sorted(unknown)}")
        timeout = float(connector.get("timeout", http.DEFAULT_TIMEOUT))
        response = http.send(
            self.session, method["httpMethod"], url, body=body, query=query, timeout=timeout
        )
        result = http.decode_body(response)
        if connector.get("skip_polling"):
            return result
        base = root + document.get("servicePath", "")
        if method.get("response", {}).get("$ref") == LRO:
            return self.wait(base, result, connector, name)
        if service == "aiplatform" and name.endswith(WAITS_FOR_THE_JOB):
            return self.poll(base, result, _job_done, connector, name, "job")
        return result

    def poll(
        self,
        base: str,
        resource: Any,
        done: Any,
        connector: dict[str, Any],
        name: str,
        kind: str,
    ) -> dict[str, Any]:
        """GET `resource` (by its `name`) until `done(resource)`, as `polling_policy` says,
        for at most the connector's `timeout`."""
        policy = {**DEFAULT_POLLING, **(connector.get("polling_policy") or {})}
        deadline = self.runtime.clock.now() + float(
            connector.get("timeout", DEFAULT_CONNECTOR_TIMEOUT)
        )
        delay = float(policy["initial_delay"])
        while not (isinstance(resource, dict) and done(resource)):
            if not isinstance(resource, dict) or "name" not in resource:
                raise error("ResponseTypeError", f"{name}: expected a {kind}, got {resource!r}")
            if self.runtime.clock.now() + delay > deadline:
                raise error("TimeoutError", f"{name}: {kind} {resource['name']} not done in time")
            self.runtime.clock.sleep(delay)
            delay = min(delay * float(policy["multiplier"]), float(policy["max_delay"]))
            resource = http.decode_body(
                http.send(self.session, "GET", f"{base}v1/{resource['name']}")
            )
        return resource

    def wait(self, base: str, operation: Any, connector: dict[str, Any], name: str) -> Any:
        """Poll a long-running operation until done; its `response`, or an OperationError."""
        operation = self.poll(
            base, operation, _operation_done, connector, name, "long-running operation"
        )
        if "error" in operation:
            problem = operation["error"]
            raise WorkflowRaise({
                "message": f"{name}: the operation failed: {problem.get('message', problem)}",
                "tags": ["OperationError"],
                "operation": operation,
            })  # fmt: skip
        return operation.get("response")


def _operation_done(operation: dict[str, Any]) -> bool:
    return bool(operation.get("done"))


def _job_done(job: dict[str, Any]) -> bool:
    return job.get("state") in FINAL_JOB_STATES
