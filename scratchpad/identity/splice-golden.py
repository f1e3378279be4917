# Replaces PROTOCOL.md §11's scenarios with the output of `npx tsx scratchpad/print-golden.ts`:
#   npx tsx scratchpad/print-golden.ts > /tmp/golden.md && python3 scratchpad/identity/splice-golden.py /tmp/golden.md
import sys
text = open(sys.argv[1]).read().rstrip("\n")
p = "PROTOCOL.md"
s = open(p).read()
start = s.index("Scenario A:", s.index("## 11. Test vectors"))
end = s.index("## 12. Typed messages")
s = s[:start] + text + "\n\n" + s[end:]
open(p, "w").write(s)
