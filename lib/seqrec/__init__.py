"""seqrec: next-item, next-interest and purchase-intent prediction on Apache Spark."""

__version__ = "0.1.0"
