"""Tick data layer: exchange feeds and files -> validated Parquet -> features and training windows."""
