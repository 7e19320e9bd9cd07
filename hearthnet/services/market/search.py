"""`market.search` (spec §1.4): by meaning when some node in the mesh serves `embed.text`,
by words otherwise.

Semantic: the query and every active post (title + body) are embedded with one model;
the score is their cosine (vectors are unit length). Post vectors are cached in memory
(`VectorCache`, LRU, keyed by model, post id and a hash of title + body, so an edited post
is embedded again), and so is the matrix of the active posts' vectors, rebuilt only when
the set of posts or their vectors changes; a search embeds only what the cache lacks, in
batches, within a time budget. Posts still unembedded when the budget runs out are left
out of that search and counted in `meta.not_embedded` (the cache keeps what was done).

Substring: each word of the query found in the title counts 1, in the body, tags or
category 0.6; the score is the sum over the query's words divided by their number, and
posts scoring 0 are left out.
"""
from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Sequence

from hearthnet.services.market.post import Post

if TYPE_CHECKING:
    import numpy as np

CACHE_ENTRIES = 5000
EMBED_BATCH = 256  # the most texts one embed.text call takes


class VectorCache:
    """LRU of post vectors: (model, event_id, content hash) -> unit vector."""

    def __init__(self, capacity: int = CACHE_ENTRIES) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple[str, str, str]) -> Any:
        vec = self._items.get(key)
        if vec is not None:
            self._items.move_to_end(key)
        return vec

    def put(self, key: tuple[str, str, str], vec: Any) -> None:
        self._items[key] = vec
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


class Matrix:
    """The stacked vectors of one list of cache keys, kept while that list stays the same
    object (the service keys the view's cached active list once), so a repeated search
    costs one matrix-vector product."""

    def __init__(self) -> None:
        self.keys: list[tuple[str, str, str]] | None = None
        self.matrix: Any = None

    def covers(self, keys: list[tuple[str, str, str]]) -> bool:
        return keys is self.keys

    def build(self, keys: list[tuple[str, str, str]], cache: VectorCache) -> "np.ndarray":
        import numpy as np

        rows = [cache.get(k) for k in keys]
        self.matrix = np.stack(rows) if rows else np.zeros((0, 1), dtype=np.float32)
        self.keys = keys
        return self.matrix


def semantic_rank(posts: Sequence[Post], matrix: "np.ndarray", query: "np.ndarray", k: int) -> list[tuple[Post, float]]:
    import numpy as np

    if not posts:
        return []
    scores = matrix @ query
    k = min(k, len(posts))
    top = np.argpartition(-scores, k - 1)[:k]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(posts[i], float(scores[i])) for i in top]


def substring_rank(posts: Sequence[Post], query: str, k: int) -> list[tuple[Post, float]]:
    words = [w for w in query.lower().split() if w]
    if not words:
        return []
    scored = []
    for order, post in enumerate(posts):
        title, rest, hits = post.title_lower, post.rest_lower, 0.0
        for w in words:
            if w in title:
                hits += 1.0
            elif w in rest:
                hits += 0.6
        if hits:
            scored.append((-hits / len(words), order, post))
    # best first; ties newest first (posts come newest first; `order` is unique, so posts are never compared)
    return [(post, round(-neg, 4)) for neg, _order, post in heapq.nsmallest(k, scored)]
