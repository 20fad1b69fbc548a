"""The decision service on the api-server: schema, worker authentication, FastAPI app, plugin."""
