"""Local mode: the cloud's services as processes on 127.0.0.1, speaking the real APIs."""
