"""Bytes in: chunked, memory-mapped reading (``files.py``), line framing for every
text format (``lines.py``, ``scan.py``, ``framed.py``), the compiled readers of hot
fields (``fields.py``) and the one-pass presence probe (``probe.py``)."""
