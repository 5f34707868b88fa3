"""Retrieval: embeddings, FAISS and BM25 indexes, graph context, fusion, evaluation.

Importing ``retrieval`` is cheap: FAISS, torch and sentence-transformers load on first use.
"""

from retrieval.chunking import Chunk, chunk_documents, chunk_text, count_tokens
from retrieval.corpus import Corpus, as_embedder, build_corpus, corpus_dir, load_retriever
from retrieval.embedder import Embedder, EmbeddingCache, SentenceEmbedder
from retrieval.evaluate import evaluate_rankings, mrr_at_k, ndcg_at_k, recall_at_k
from retrieval.fusion import rrf, weighted
from retrieval.graph_context import EntityRanker, ExampleVoter, GraphContext, render_fact
from retrieval.lexical import BM25Index
from retrieval.retriever import MODES, Retriever, RetrieverConfig
from retrieval.types import Document, Evidence, Hit, Mode, Passage
from retrieval.vector_index import ExactIndex, FaissIndex, VectorIndex, load_index

__all__ = [
    "MODES",
    "BM25Index",
    "Chunk",
    "Corpus",
    "Document",
    "Embedder",
    "EmbeddingCache",
    "EntityRanker",
    "Evidence",
    "ExactIndex",
    "ExampleVoter",
    "FaissIndex",
    "GraphContext",
    "Hit",
    "Mode",
    "Passage",
    "Retriever",
    "RetrieverConfig",
    "SentenceEmbedder",
    "VectorIndex",
    "as_embedder",
    "build_corpus",
    "chunk_documents",
    "chunk_text",
    "corpus_dir",
    "count_tokens",
    "evaluate_rankings",
    "load_index",
    "load_retriever",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "render_fact",
    "rrf",
    "weighted",
]
