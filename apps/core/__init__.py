"""The server's infrastructure, shared by the applications: settings, the service container,
security (API keys, rate limits, where a request comes from), errors, middleware, logging,
metrics, tracing, PII masking, databases and retention. The applications live beside it
(``apps/customer_service``, ``apps/sentiment``, ``apps/recommend``), ``apps/main.py`` assembles them.
"""
