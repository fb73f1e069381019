"""The inference app: SageMaker's ``GET /ping`` and ``POST /invocations`` on port 8080."""
