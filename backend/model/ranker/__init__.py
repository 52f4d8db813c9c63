"""The candidate ranker: picks the named object among the objects a mask lights up.

- ``ranker``: ``ComponentRanker``, scoring candidates from their features and the phrase's tokens.
- ``features``: connected components of a thresholded mask and the features of each candidate.
- ``relation_anchor``: splitting a relational phrase into its subject and its anchor.

May import ``backend.model.config``; never CLIP, SAM, the architectures or the checkpoint code.
"""
