"""Encode with a real PyLate (run by the tests in their own PyLate 1.6 virtualenv, not in latepool's).

Usage: python pylate_reference.py TEXTS_JSON CHECKPOINT=OUT_NPZ[=SAVE_DIR] ...

For each CHECKPOINT, loads it with ``pylate.models.ColBERT``, encodes the ``queries`` and
``documents`` of TEXTS_JSON and writes ``query_<i>`` / ``document_<i>`` arrays to OUT_NPZ; with
SAVE_DIR, also saves the loaded model there with PyLate's own ``save``.
"""

import json
import sys

import numpy as np
from pylate import models

with open(sys.argv[1], encoding="utf-8") as handle:
    texts = json.load(handle)
for job in sys.argv[2:]:
    checkpoint, out, *save = job.split("=")
    model = models.ColBERT(model_name_or_path=checkpoint, device="cpu")
    queries = model.encode(texts["queries"], is_query=True, convert_to_numpy=True)
    documents = model.encode(texts["documents"], is_query=False, convert_to_numpy=True)
    arrays = {f"query_{i}": q for i, q in enumerate(queries)}
    arrays.update({f"document_{i}": d for i, d in enumerate(documents)})
    np.savez(out, **arrays)
    if save:
        model.save(save[0])
