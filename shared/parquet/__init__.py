"""The Parquet format layer: Thrift, footer, pages, codecs and file assembly.

It moves and re-frames page bytes; it never decodes column values.
"""
