"""derivlake: Kafka -> DuckLake pipeline for crypto derivatives market data."""

__version__ = "0.1.0"
