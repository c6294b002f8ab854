"""Federation: sites that study together while each keeps its images. A coordinator sends a
workflow reference to its partners; each partner runs its own pinned copy under its own
policy and lets only declared outputs leave, through one gate that records every byte
(docs/federation.md)."""
