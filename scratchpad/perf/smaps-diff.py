# Scratch: per-session RSS growth by mapping kind between two /proc/PID/smaps copies (scratchpad/perf/idle-smaps.ts writes them).
# python3 scratchpad/perf/smaps-diff.py /tmp/smaps.before /tmp/smaps.after 1000
import sys, re, collections
def load(path):
    out = collections.Counter()
    cur = None
    for line in open(path):
        m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$', line)
        if m:
            size = (int(m.group(2),16)-int(m.group(1),16))//1024
            name = m.group(3).strip() or 'anon'
            if name == 'anon': name = 'anon %s' % ('256K' if size==256 else '64M-arena' if size in (65536, 65532) or size > 60000 else 'other')
            cur = name
        elif line.startswith('Rss:') and cur:
            out[cur] += int(line.split()[1])
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
n = int(sys.argv[3])
for k in sorted(set(a)|set(b), key=lambda k: -(b[k]-a[k])):
    d = b[k]-a[k]
    if abs(d) > 500: print(f"{d/n*1.024:8.1f} KB/session  {k[:80]}")
