"""AWS Lambda entry point: the very app of `app.py`, behind a function URL, through Mangum.

The template deploys it (MlEngineFunction, runtime python3.12, handler
`lambda_handler.handler`) with an AWS_IAM function URL that only score's role may invoke.
A function URL event (payload format 2.0) becomes one ASGI request and the app's answer the
function's response, so the HTTP app's limits and answers hold unchanged: a body over
ML_MAX_BODY_BYTES is a 413 from its Content-Length, JSON nested too deeply a 422. A body the
client sent as binary arrives base64-encoded (isBase64Encoded) and Mangum decodes it first.

The app, with its model, is built at import: in Lambda's init phase, once per execution
environment, not inside an invocation. `cold_start.py` measures that.
"""
from mangum import Mangum

from app import create_app

# lifespan off: the app has no start-up or shutdown hooks; everything is built here.
handler = Mangum(create_app(), lifespan="off")
