#!/bin/bash
# fndiff.sh BIN_A BIN_B SYMBOL: whole-function disassembly diff, addresses and jump targets normalised
norm() { local b=$1 s=$2; read -r a size <<<"$(nm -S "$b" | awk -v s="$s" '$4==s {print $1, $2}')"
  objdump -d --no-show-raw-insn -w --start-address=0x$a --stop-address=$(printf '0x%x' $((16#$a + 16#$size))) "$b" \
   | grep -P '^\s+[0-9a-f]+:' | sed -E 's/^\s+[0-9a-f]+:\s+//; s/[0-9a-f]+ <([^>+]*)(\+0x[0-9a-f]+)?>/<\1\2>/; s/0x[0-9a-f]+\(%rip\)/RIP/; s/#.*//; s/\s+$//'; }
diff <(norm "$1" "$3") <(norm "$2" "$3") > /tmp/fndiff.$$; n=$(grep -c '^[<>]' /tmp/fndiff.$$); echo "$(norm "$1" "$3" | wc -l) vs $(norm "$2" "$3" | wc -l) instructions, $n differing lines: $(swift demangle --simplified --compact "$3" | cut -c1-90)"; rm -f /tmp/fndiff.$$
