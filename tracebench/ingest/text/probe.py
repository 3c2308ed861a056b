"""Which of a few events occur anywhere in the inputs: one pass, before streaming.

Some rules depend on the whole input (``write_msr`` present: an ``ipi_send_cpu`` is a
duplicate of the ICR write that follows it; ``kvm_eoi`` present: it replaces other
EOI sources...). An event counts as present when one of ``" NAME: "``, ``":NAME: "``
or ``" NAME:\\n"`` occurs anywhere in the bytes of a file. All names are looked for
in the same pass: colons are found eight bytes at a time, and only a colon after a
byte that ends one of the names is compared with them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tracebench.ingest.text.files import scan_file
from tracebench.jit import kernel

_COLONS = np.uint64(0x3A3A3A3A3A3A3A3A)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ONE = np.uint64(1)
_BYTE_INDEX = np.uint64(0x0001020304050607)  # (1 << 8k) * this >> 56 == k


@kernel
def _at_colon(buf, n, k, names, noff, last_char, found):
    """Mark the names that end right before the colon at ``k``."""
    if k < 1 or k + 1 >= n or not last_char[buf[k - 1]]:
        return
    nx = buf[k + 1]
    if nx != 32 and nx != 10:
        return
    for i in range(len(noff) - 1):
        ln = noff[i + 1] - noff[i]
        s = k - ln
        if found[i] or s < 1:
            continue
        pre = buf[s - 1]
        if not (pre == 32 or (pre == 58 and nx == 32)):
            continue
        same = True
        for m in range(ln):
            if buf[s + m] != names[noff[i] + m]:
                same = False
                break
        if same:
            found[i] = True


@kernel
def _probe_nb(buf, words, lo, hi, names, noff, last_char, found):
    """Look at the colons of ``buf[lo:hi]`` (``words`` is the same memory as uint64)."""
    k = lo
    while k < hi and k % 8:
        if buf[k] == 58:
            _at_colon(buf, hi, k, names, noff, last_char, found)
        k += 1
    for w in range(k // 8, hi // 8):
        y = words[w] ^ _COLONS
        t = ~(((y & _LOW7) + _LOW7) | y | _LOW7)  # exact: high bit where a byte is ':'
        while t:
            lowest = t & (~t + _ONE)
            j = 8 * w + np.int64(((lowest >> np.uint64(7)) * _BYTE_INDEX) >> np.uint64(56))
            if j > 0 and last_char[buf[j - 1]]:  # most colons stop here, without a call
                _at_colon(buf, hi, j, names, noff, last_char, found)
            t ^= lowest
    for j in range(max(k, 8 * (hi // 8)), hi):
        if buf[j] == 58:
            _at_colon(buf, hi, j, names, noff, last_char, found)


class Needles:
    """The names looked for, and which were found so far (in the bytes given to :meth:`scan`).

    ``found`` may be read from another thread while :meth:`scan` runs: an entry only
    ever turns true.
    """

    #: bytes before a range that :meth:`scan` callers include, so no needle is cut
    OVERLAP = 64

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        enc = [nm.encode() for nm in names]
        if max(len(e) for e in enc) + 3 > self.OVERLAP:
            raise ValueError("probe names must be shorter than Needles.OVERLAP - 3 bytes")
        self.data = np.frombuffer(b"".join(enc), np.uint8).copy()
        self.noff = np.cumsum([0] + [len(e) for e in enc]).astype(np.int64)
        self.last_char = np.zeros(256, np.bool_)
        self.last_char[[e[-1] for e in enc]] = True
        self.found = np.zeros(len(names), np.bool_)

    def scan(self, arr: np.ndarray, lo: int, hi: int) -> None:
        """Look for the names in ``arr[lo:hi]`` (``arr`` starts 8-byte aligned)."""
        if self.found.all():
            return
        words = arr[: len(arr) - len(arr) % 8].view(np.uint64)
        _probe_nb(arr, words, lo, hi, self.data, self.noff, self.last_char, self.found)

    def __contains__(self, name: str) -> bool:
        return bool(self.found[self.names.index(name)])

    def found_names(self) -> frozenset:
        return frozenset(nm for nm, f in zip(self.names, self.found, strict=True) if f)


def present(paths: list[Path], names: tuple[str, ...]) -> frozenset:
    """The ``names`` that occur as an event (see module doc) in any of ``paths``."""
    needles = Needles(names)
    for p in paths:
        scan_file(p, needles.scan, overlap=Needles.OVERLAP)
    return needles.found_names()
