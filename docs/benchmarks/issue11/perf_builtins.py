#!/usr/bin/env python3
"""Names the samples `perf` attributes to the stripped deno binary: V8's builtins.

`perf record -g` with `--v8-flags=--perf-basic-prof` names JavaScript functions, but about a third
of sipedge's user time lands in the deno binary as bare addresses, because Deno ships stripped.
Much of it is V8's *embedded builtins* (String.prototype.indexOf, Map.prototype.get, the C++
runtime entry, megamorphic ICs...), which live in the binary's text as one blob. V8 also copies
that blob into its code range and lists every builtin there in the perf map (`Builtin:NAME`), in
the same order and at the same relative offsets, so a sample's offset in the binary minus the
blob's offset names its builtin. Samples in the binary outside the blob are C++/Rust (V8's runtime
and GC, Deno's ops, tokio).

Usage:
  perf script -i perf.data -F comm,tid,ip,sym,dso > samples.txt
  perf_builtins.py --map /tmp/perf-PID.map --samples samples.txt [--blob 0xOFFSET] [--calls REGEX]

--blob: the blob's offset in the deno binary. Without it, it is found by starting a deno process,
reading the first builtin's bytes from its memory and searching the binary for them (needs
/proc/PID/mem, i.e. root or ptrace rights). For deno 2.9.6 x86_64 (npm package) it is 0x35cf000.

Prints samples per leaf (a builtin, or C++ reached through which builtin, e.g. `CEntry <- MapPrototypeGet`:
a runtime call made by Map.prototype.get), as a share of all samples. With --calls REGEX: for the
builtins matching it, the JavaScript functions that called them (the first three JS frames).
Frames of JIT code are named from the perf map as perf does; V8 reuses code addresses after a
collection, so a frame name can be stale: trust counts, check names.
"""
import argparse, bisect, collections, os, re, shutil, subprocess, time

p = argparse.ArgumentParser()
p.add_argument("--map", required=True, help="the perf map of the profiled process (/tmp/perf-PID.map)")
p.add_argument("--samples", required=True, help="perf script -F comm,tid,ip,sym,dso output")
p.add_argument("--blob", help="offset of V8's embedded blob in the deno binary (hex)")
p.add_argument("--deno", default=shutil.which("deno"), help="the deno binary (to find the blob)")
p.add_argument("--calls", help="show the JS callers of builtins matching this regex")
p.add_argument("--top", type=int, default=40)
args = p.parse_args()


def find_blob(deno):
    """Starts deno, reads its first builtin's bytes from memory, finds them in the binary."""
    script = "/tmp/perf_builtins_idle.js"
    with open(script, "w") as f:
        f.write("setTimeout(() => {}, 10000);\n")
    child = subprocess.Popen([deno, "run", "--v8-flags=--perf-basic-prof", script])
    try:
        time.sleep(1.5)
        first = min(
            int(line.split()[0], 16)
            for line in open(f"/tmp/perf-{child.pid}.map")
            if " Builtin:" in line
        )
        with open(f"/proc/{child.pid}/mem", "rb") as mem:
            mem.seek(first)
            head = mem.read(256)
    finally:
        child.kill()
        child.wait()
        try:
            os.remove(f"/tmp/perf-{child.pid}.map")
        except OSError:
            pass
    binary = open(os.path.realpath(deno), "rb").read()
    at = binary.find(head)
    if at < 0:
        raise SystemExit("the embedded blob was not found in " + deno)
    return at


blob = int(args.blob, 16) if args.blob else find_blob(args.deno)
builtins = sorted(
    (int(a, 16), int(s, 16), n.strip())
    for a, s, n in (line.split(" ", 2) for line in open(args.map))
    if n.startswith("Builtin:")
)
base = builtins[0][0]
starts = [b[0] - base for b in builtins]


def builtin_at(offset):
    o = offset - blob
    i = bisect.bisect_right(starts, o) - 1
    if o < 0 or i < 0:
        return None
    start, size, name = builtins[i]
    return name.replace("Builtin:", "") if o < start - base + size else None


def frames_of(sample):
    lines = [l.strip() for l in sample.strip().split("\n") if l.strip()]
    return lines[1:] if len(lines) > 1 else []


def short(name):
    name = name.replace("CEntry_Return1_ArgvOnStack_NoBuiltinExit", "CEntry")
    return name.replace("CEntry_Return1_ArgvOnStack_BuiltinExit", "CEntry(builtin exit)")


leaves = collections.Counter()
callers = collections.Counter()
total = 0
for sample in open(args.samples).read().split("\n\n"):
    frames = frames_of(sample)
    if not frames:
        continue
    total += 1
    if "deno/deno" not in frames[0] and not frames[0].endswith("(deno)"):
        continue
    names, js = [], []
    for f in frames:
        if "/tmp/perf-" in f:
            js.append(re.sub(r" \(/tmp.*", "", re.sub(r"^\S+ ", "", f)))
        elif js == [] and ("deno/deno" in f or f.endswith("(deno)")):
            n = builtin_at(int(f.split()[0], 16))
            if n:
                names.append(n)
    leaf_cpp = builtin_at(int(frames[0].split()[0], 16)) is None
    if not names:
        key = "C++ (no builtin on the stack)" + ("" if js else ", no JS")
    else:
        key = short(names[0]) + (" <- " + short(names[-1]) if len(names) > 1 and names[-1] != names[0] else "")
        if leaf_cpp:
            key += " [C++]"
    leaves[key] += 1
    if args.calls and any(re.search(args.calls, n) for n in names):
        callers[" < ".join(js[:3])] += 1

print(f"{total} samples; embedded blob at {blob:#x}")
for key, n in leaves.most_common(args.top):
    print(f"{n:6d} {100 * n / total:5.2f}%  {key}")
if args.calls:
    print(f"\nJS callers of /{args.calls}/:")
    for key, n in callers.most_common(15):
        print(f"{n:6d}  {key}")
