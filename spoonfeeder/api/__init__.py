"""The REST face: FastAPI routes under /api over the same services as the Gradio UI.

Every route is a thin handler: parse the body (Pydantic), call one service method, wrap
the result in the seed's envelope. Errors of the one exception tree become the
envelope's error with a stable code (`spoonfeeder.api.failures`).
"""
