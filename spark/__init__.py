"""The Bronze -> Gold Spark Structured Streaming job (runs under spark-submit, locally or on EMR)."""
