"""Recommendation models: popularity, BPR-MF, LightGCN, a KG-attention model on the collaborative KG, a text tower.

Modules: ``embedding`` (frozen vectors, numpy only; what is served), ``base`` (BPR training),
``popularity``, ``bpr``, ``lightgcn`` (PyG), ``kgat`` (PyG), ``text`` (MiniLM text tower). Nothing
is imported here, so that serving does not import torch.
"""

__all__: list[str] = []
