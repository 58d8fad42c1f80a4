#!/usr/bin/env python3
"""Classify /proc/PID/smaps mappings, Rss/Pss kB per class:
 binary text / data, shared libs, glibc main arena ([heap]), glibc thread arenas (64 MiB-aligned
 heap: rw part + PROT_NONE rest summing to 64 MiB), V8 heap pages (anonymous rw 256 KiB mappings:
 V8 without pointer compression maps each heap page separately), V8 code/large reservations
 (rwx or >=64 MiB), thread stacks (anon next to a 4 KiB guard), other anon."""
import sys, re, collections
pid = sys.argv[1]
maps = []; cur = None
for line in open(f"/proc/{pid}/smaps"):
    m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
    if m:
        cur = dict(s=int(m[1],16), e=int(m[2],16), p=m[3], n=m[4].strip(), rss=0, pss=0); maps.append(cur); continue
    k = line.split(":")[0]
    if k == "Rss": cur["rss"] = int(line.split()[1])
    if k == "Pss": cur["pss"] = int(line.split()[1])
tot = collections.defaultdict(lambda: [0,0,0])
arena_parts = set()
for i, mp in enumerate(maps):
    if mp["n"] == "" and mp["p"].startswith("rw") and mp["s"] % (64<<20) == 0:
        j = i; end = mp["e"]
        while j+1 < len(maps) and maps[j+1]["n"] == "" and maps[j+1]["s"] == end and maps[j+1]["p"].startswith("---"):
            j += 1; end = maps[j]["e"]
        if end - mp["s"] == 64<<20: arena_parts.update(range(i, j+1))
for i, mp in enumerate(maps):
    n = mp["n"]; size = (mp["e"]-mp["s"])//1024
    if n:
        if n.endswith("/deno") or n.endswith("/kamailio"): cls = "binary " + ("text (r-x)" if "x" in mp["p"] else "data/rodata")
        elif n == "[heap]": cls = "glibc main arena [heap]"
        elif n.startswith("[stack"): cls = "main thread stack"
        elif ".so" in n: cls = "shared libs"
        elif "/.cache/deno/" in n: cls = "deno caches (mmapped sqlite)"
        else: cls = "other named"
    elif i in arena_parts: cls = "glibc thread arenas"
    elif mp["p"] == "rw-p" and size == 256: cls = "V8 heap pages (256 KiB)"
    elif "x" in mp["p"] or size >= 65536: cls = "V8 code range / big reservations"
    elif i > 0 and maps[i-1]["n"] == "" and maps[i-1]["p"].startswith("---") and (maps[i-1]["e"]-maps[i-1]["s"]) == 4096 and maps[i-1]["e"] == mp["s"]: cls = "thread stacks"
    else: cls = "other anon (malloc mmap chunks, V8 large objects, ...)"
    tot[cls][0] += mp["rss"]; tot[cls][1] += mp["pss"]; tot[cls][2] += 1
R = sum(v[0] for v in tot.values()); P = sum(v[1] for v in tot.values())
for k, v in sorted(tot.items(), key=lambda kv: -kv[1][0]):
    if v[0] or v[1]: print(f"{v[0]:>9} {v[1]:>9} {v[2]:>5}  {k}")
print(f"{R:>9} {P:>9}        TOTAL (Rss kB, Pss kB, mappings)")
