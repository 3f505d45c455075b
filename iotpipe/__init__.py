"""iotpipe: IoT streaming analytics pipeline (Bronze JSON Lines -> Spark -> Gold Parquet)."""
