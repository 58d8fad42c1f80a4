#!/usr/bin/env python3
"""heap_diff.py N LABEL=BEFORE,AFTER [LABEL=BEFORE,AFTER ...] [--top K] [--owners]

V8 heap snapshots (.heapsnapshot, e.g. from per_conn.sh SNAP=...) grouped by (type, name):
AFTER minus BEFORE per connection (N connections), one column pair per LABEL, sorted by the
first label. Strings, numbers and code are one group per type; context names lose their @id.
--owners: for property/element backing stores ("(object properties)", "(object elements)"),
group by the constructor name of the object that holds them instead."""
import json, re, sys
from collections import defaultdict

def load(path, owners):
    snap = json.load(open(path))
    meta = snap["snapshot"]["meta"]
    fields, etypes = meta["node_fields"], meta["edge_fields"]
    types = meta["node_types"][0]
    nf, ef = len(fields), len(etypes)
    ti, ni, si, eci = (fields.index(k) for k in ("type", "name", "self_size", "edge_count"))
    to_i = etypes.index("to_node")
    strings, nodes, edges = snap["strings"], snap["nodes"], snap["edges"]
    holder = {}
    if owners:
        e = 0
        for i in range(0, len(nodes), nf):
            for _ in range(nodes[i + eci]):
                target = edges[e + to_i]
                if strings[nodes[target + ni]] in ("(object properties)", "(object elements)"):
                    holder.setdefault(target, i)
                e += ef
    groups = defaultdict(lambda: [0, 0])
    for i in range(0, len(nodes), nf):
        t = types[nodes[i + ti]]
        name = strings[nodes[i + ni]]
        if t in ("string", "concatenated string", "sliced string", "number", "code"):
            name = ""
        name = re.sub(r" @\d+", "", name)[:60]
        if owners and i in holder:
            h = holder[i]
            name = f"{name} of {strings[nodes[h + ni]][:40]}"
        g = groups[(t, name)]
        g[0] += 1
        g[1] += nodes[i + si]
    return groups

args = sys.argv[1:]
top = 40
owners = "--owners" in args
if owners:
    args.remove("--owners")
if "--top" in args:
    k = args.index("--top")
    top = int(args[k + 1])
    del args[k:k + 2]
n = int(args[0])
cols = []
for spec in args[1:]:
    label, pair = spec.split("=", 1)
    b, a = pair.split(",")
    before, after = load(b, owners), load(a, owners)
    diff = {}
    for key in set(before) | set(after):
        x, y = before.get(key, [0, 0]), after.get(key, [0, 0])
        diff[key] = ((y[1] - x[1]) / n, (y[0] - x[0]) / n)
    cols.append((label, diff))
keys = sorted({k for _, d in cols for k in d}, key=lambda k: -cols[0][1].get(k, (0, 0))[0])
head = "".join(f" | {label:>10} B {'objs':>6}" for label, _ in cols)
print("type / name".ljust(62) + head)
print("total".ljust(62) + "".join(f" | {sum(v[0] for v in d.values()):12.0f} {'':>6}" for _, d in cols))
for k in keys[:top]:
    row = "".join(f" | {d.get(k, (0, 0))[0]:12.1f} {d.get(k, (0, 0))[1]:6.2f}" for _, d in cols)
    print(f"{k[0]} / {k[1]}"[:62].ljust(62) + row)
