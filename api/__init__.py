"""HTTP metrics API (FastAPI); built in the API issue."""
