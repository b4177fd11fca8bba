#!/usr/bin/env python3
"""Where prefix hits are lost: reads bench-routing per-request records (--records) and splits
the prompt tokens of requests that carry a shared prefix by what happened to them.

Usage: analyze.py RECORDS.tsv [RECORDS.tsv ...]   (one markdown table row per file)

Classes, for a request of prefix group G sent to backend B (in arrival order):
- cold:    no earlier request of G was sent anywhere (the first miss is unavoidable);
- spread:  earlier requests of G went elsewhere, never to B (the router split the group);
- follow:  an earlier request of G went to B (the router kept the group together);
  `follow, racing` is the part of it whose previous G request on B arrived less than
  RACE_S seconds before (its prefill may not have finished, so the engine cannot reuse it yet).
`hit` is cached / prompt tokens of the class, `ideal` is the prefix the class could have hit
(G's shared length) over its prompt tokens. Token counts are the engine's (chat template
included); shared_len is in workload tokens.
"""
import csv
import sys

RACE_S = 0.25


def analyze(path):
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    rows.sort(key=lambda r: float(r["arrival"]))
    seen = {}  # group -> {backend: last arrival}
    cls = {}
    total_p = total_c = 0
    backends = {}
    for r in rows:
        if r["ok"] != "1":
            continue
        p, c = int(r["prompt_tokens"]), int(r["cached"])
        total_p += p
        total_c += c
        b, g, t = r["backend"], r["group"], float(r["arrival"])
        backends[b] = backends.get(b, 0) + 1
        if g == "-":
            continue
        prev = seen.setdefault(g, {})
        if not prev:
            k = "cold"
        elif b not in prev:
            k = "spread"
        elif t - prev[b] < RACE_S:
            k = "follow, racing"
        else:
            k = "follow"
        prev[b] = t
        n, pp, cc, ideal = cls.get(k, (0, 0, 0, 0))
        cls[k] = (n + 1, pp + p, cc + c, ideal + int(r["shared_len"]))
    return total_p, total_c, cls, backends


def main():
    order = ["cold", "spread", "follow", "follow, racing"]
    print("| records | prefix hit | " + " | ".join(f"{k}: reqs, hit" for k in order) + " | groups per backend spread |")
    print("|---|---:|" + "---:|" * len(order) + "---|")
    for path in sys.argv[1:]:
        tp, tc, cls, backends = analyze(path)
        cells = []
        for k in order:
            n, p, c, _ = cls.get(k, (0, 0, 0, 0))
            cells.append(f"{n}, {100.0 * c / p:.0f}%" if p else "0")
        spread = ", ".join(f"{b} {n}" for b, n in sorted(backends.items()))
        print(f"| {path.split('/')[-1]} | {100.0 * tc / max(tp, 1):.1f}% | " + " | ".join(cells) + f" | {spread} |")


if __name__ == "__main__":
    main()
