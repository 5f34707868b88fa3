"""The recommend app: KG-aware recommendations with text for cold start and explanations.

See docs/recommend.md. Library modules: ``data``, ``lastfm``, ``synthetic``, ``splits``,
``metrics``, ``models/``, ``recommender``, ``ranker``, ``train``, ``evaluate``, ``explain``,
``feedback``, ``setup``; the service: ``service``, ``schemas``, ``router``.
"""

__all__: list[str] = []
