"""Records in, candidate rows out: the rule machinery (``base.py``), the guest table
(``guest.py``), the KVM-host table (``kvmhost.py``, with what it learns about a whole
input in ``kvmfacts.py``) and the compiled copy of the hot guest rules (``fastmap.py``)."""
