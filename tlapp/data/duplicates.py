"""Duplicate images: exact copies (same bytes) and near ones (resized, recompressed or lightly
edited: nearly the same difference hash). The scan lists them; a run warns when a validation or
test image has a copy in training, since that split's accuracy is then optimistic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tlapp.base.fsutil import sha256_file
from tlapp.data.examples import Example, ScanReport

HASH_SIDE = 16  # a 16x17 grey thumbnail: 256 bits


def fingerprint(path: Path, rgb: Any) -> tuple[str, str]:
    """(sha256 of the file's bytes, 256-bit difference hash of the picture).

    The difference hash (grey 17x16 thumbnail, one bit per horizontal neighbour pair) barely
    changes when a photo is resized or recompressed, so close hashes flag near-duplicates and
    equal digests exact ones. (An 8x9 hash was too coarse: on the sign-language digits it matched
    different hands on the same white background.)
    """
    from PIL import Image

    small = np.asarray(
        Image.fromarray(rgb).convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.BILINEAR), dtype=np.int16
    )
    digest = sha256_file(path)
    if np.ptp(small) < 8:  # a nearly flat picture: its hash is noise, and every flat picture would "match"
        return digest, ""
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return digest, f"{int(''.join('1' if b else '0' for b in bits), 2):064x}"


# Hashes this close (of 256 bits) are one picture. Measured on the 2,062 sign-language digits: different
# photos are at least 14 bits apart (median nearest 34); a half-size copy saved at JPEG quality 70 is a
# median of 3 bits from its original (90th percentile 13).
NEAR_BITS = 10
_BANDS = NEAR_BITS + 1  # two hashes within NEAR_BITS agree exactly on at least one of this many bands
_BAND_WIDTH = -(-HASH_SIDE * HASH_SIDE // _BANDS)


def near_pairs(hashes: list[int]) -> list[tuple[int, int]]:
    """Index pairs whose hashes differ in at most :data:`NEAR_BITS` bits. Such hashes agree on at least one
    of :data:`_BANDS` bands (pigeonhole), so only hashes sharing a band are compared: linear, not quadratic."""
    pairs = set()
    mask = (1 << _BAND_WIDTH) - 1
    for band in range(_BANDS):
        buckets: dict[int, list[int]] = {}
        for i, h in enumerate(hashes):
            buckets.setdefault((h >> (_BAND_WIDTH * band)) & mask, []).append(i)
        for members in buckets.values():
            for a in range(len(members)):
                for b in range(a + 1, len(members)):
                    i, j = members[a], members[b]
                    if (hashes[i] ^ hashes[j]).bit_count() <= NEAR_BITS:
                        pairs.add((i, j))
    return sorted(pairs)


def duplicate_groups(report: ScanReport, limit: int = 200) -> list[dict[str, Any]]:
    """Groups of usable files with the same bytes (exact) or nearly the same difference hash (near:
    resized, recompressed or lightly edited copies)."""
    exact: dict[str, list[Example]] = {}
    hashed: list[tuple[Example, int]] = []
    for e in report.examples:
        fp = report.fingerprints.get(e.path)
        if fp:
            exact.setdefault(fp[0], []).append(e)
            if fp[1]:
                hashed.append((e, int(fp[1], 16)))
    groups = [
        {"kind": "exact", "paths": sorted(m.path for m in ms), "labels": [m.label for m in ms]}
        for ms in exact.values()
        if len(ms) > 1
    ]
    exact_sets = {tuple(g["paths"]) for g in groups}
    parent = list(range(len(hashed)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in near_pairs([h for _, h in hashed]):
        parent[root(i)] = root(j)
    near: dict[int, list[Example]] = {}
    for i, (e, _) in enumerate(hashed):
        near.setdefault(root(i), []).append(e)
    for ms in near.values():
        paths = tuple(sorted(m.path for m in ms))
        if len(ms) > 1 and paths not in exact_sets:
            groups.append({"kind": "near", "paths": list(paths), "labels": [m.label for m in ms]})
    groups.sort(key=lambda g: (g["kind"] != "exact", -len(g["paths"])))
    return groups[:limit]


def leaked_images(splits: Any, fingerprints: dict[str, tuple[str, str]]) -> dict[str, int]:
    """Validation/test images whose exact bytes or (nearly) whose picture also occur in training:
    a model can score them by memory, so that split's accuracy is optimistic. Counts per split."""
    train_digests = {fingerprints[e.path][0] for e in splits.train if e.path in fingerprints}
    train_hashes = [
        int(fingerprints[e.path][1], 16) for e in splits.train if e.path in fingerprints and fingerprints[e.path][1]
    ]
    out = {}
    for name in ("val", "test"):
        held = [e for e in getattr(splits, name) if e.path in fingerprints]
        hits = {i for i, e in enumerate(held) if fingerprints[e.path][0] in train_digests}
        ours = [(i, int(fingerprints[e.path][1], 16)) for i, e in enumerate(held) if fingerprints[e.path][1]]
        n_train = len(train_hashes)
        for a, b in near_pairs(train_hashes + [h for _, h in ours]):
            if a < n_train <= b:  # one from training, one held out
                hits.add(ours[b - n_train][0])
        if hits:
            out[name] = len(hits)
    return out
