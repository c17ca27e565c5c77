"""Market and desk data producers: a deterministic simulator, a capture replayer, a live Deribit bridge.

Everything here writes exchange-shaped JSON into the topics of architecture.md section 3, so the drain and
the normalizers cannot tell (apart from the `source` header) which producer a message came from.
"""
