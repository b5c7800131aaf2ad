"""A tiny serving container for tests: Vertex AI's custom container contract, stdlib only.

Answers `AIP_HEALTH_ROUTE` with 200 and `AIP_PREDICT_ROUTE` with the instances echoed
(plus the parameters and the environment it saw); an instance `"fail"` gets a 400.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = {
    key: os.environ.get(key) for key in ("AIP_STORAGE_URI", "AIP_DEPLOYED_MODEL_ID", "AIP_MODE")
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.reply(200 if self.path == os.environ["AIP_HEALTH_ROUTE"] else 404, {})

    def do_POST(self):
        if self.path != os.environ["AIP_PREDICT_ROUTE"]:
            return self.reply(404, {"error": f"no route {self.path}"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if "fail" in body["instances"]:
            return self.reply(400, {"error": "instance 'fail' refused"})
        predictions = [
            {"echo": i, "parameters": body.get("parameters"), **SEEN} for i in body["instances"]
        ]
        self.reply(200, {"predictions": predictions})

    def reply(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["AIP_HTTP_PORT"])), Handler).serve_forever()
