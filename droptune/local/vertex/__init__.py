"""Local Vertex AI: the REST v1 methods droptune uses (customJobs, models, endpoints,
operations, predict, tuningJobs, generateContent), served on 127.0.0.1 by `VertexServer`.

Jobs run the trainer's entry point as a local process with Vertex's `AIP_*` environment;
deployed models run the serving entry point on a free port; Gemini tuning is emulated with a
small open model (`tuning`). See `server` for the API.
"""

from droptune.local.vertex.errors import ApiError, VertexError
from droptune.local.vertex.server import VertexServer

__all__ = ["ApiError", "VertexError", "VertexServer"]
